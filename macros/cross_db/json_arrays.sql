{#
  The items of a digest, one row each, from the JSON array the plan writes
  (digest_items_json: [{"item_id": ..., "rank": ..., ...}, ...]). JSON arrays are read
  differently by each warehouse: DuckDB's json_each, Snowflake's lateral flatten.
  Returns the columns send_key, item_id, item_rank of the rows of `relation` that have items.
#}
{% macro digest_item_rows(relation, json_column='digest_items_json') -%}
    {{ return(adapter.dispatch('digest_item_rows', 'proactive_recs')(relation, json_column)) }}
{%- endmacro %}

{% macro default__digest_item_rows(relation, json_column) -%}
    select
        digests.send_key,
        json_extract_string(digest_item.value, '$.item_id') as item_id,
        cast(json_extract(digest_item.value, '$.rank') as integer) as item_rank
    from {{ relation }} as digests, json_each(digests.{{ json_column }}) as digest_item
    where digests.{{ json_column }} is not null
{%- endmacro %}

{% macro snowflake__digest_item_rows(relation, json_column) -%}
    select
        digests.send_key,
        digest_item.value:item_id::varchar as item_id,
        digest_item.value:rank::integer as item_rank
    from {{ relation }} as digests,
        lateral flatten(input => parse_json(digests.{{ json_column }})) as digest_item
    where digests.{{ json_column }} is not null
{%- endmacro %}

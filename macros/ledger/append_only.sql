{#
  The filter of the append-only notification tables (notification_log, notification_sync,
  notification_holdout): on an incremental run, only rows whose send_key the table does not
  hold yet. send_key hashes the run date, campaign, user and item, so a re-run of the same run
  date adds nothing and a row's first values (e.g. updated_at) never change.
#}
{% macro where_send_key_is_new(alias) -%}
    {%- if is_incremental() -%}
        where not exists (
            select 1 from {{ this }} as existing
            where existing.send_key = {{ alias }}.send_key
        )
    {%- endif -%}
{%- endmacro %}

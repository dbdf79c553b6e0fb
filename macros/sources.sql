{#
  The columns each source must have (docs/raw_data.md). Extra columns are allowed and flow
  through staging so filters and boosters can use them.
#}
{% macro proactive_recs_required_columns() -%}
    {{ return({
        'users': ['user_id', 'email', 'joined_at', 'country', 'timezone', 'email_opt_in', 'unsubscribed_at'],
        'items': ['item_id', 'title', 'category', 'price', 'available_from', 'available_until', 'url', 'image_url'],
        'transactions': ['user_id', 'item_id', 'occurred_at', 'event_type', 'quantity', 'amount'],
        'notification_sends': ['send_id', 'user_id', 'campaign_id', 'item_id', 'channel', 'sent_at'],
        'notification_events': ['send_id', 'event_type', 'occurred_at'],
    }) }}
{%- endmacro %}


{# The channels the package plans for (Python copy: proactive_recs.contract.CHANNELS). #}
{% macro proactive_recs_channels() -%}
    {{ return(['email', 'push']) }}
{%- endmacro %}


{# The channels as a SQL list: ('email', 'push'). #}
{% macro proactive_recs_channel_list() -%}
    {{ sql_string_list(proactive_recs_channels()) }}
{%- endmacro %}


{#
  Columns the package parses although they are not required: read as text like the required
  ones when a source has them.
#}
{% macro proactive_recs_optional_columns() -%}
    {{ return({
        'users': ['push_opt_in'],
        'items': [],
        'transactions': [],
        'notification_sends': [],
        'notification_events': [],
    }) }}
{%- endmacro %}


{#
  The select list of a base view, from the source's columns read once at run time: a source
  that is missing, or lacks a required column, stops the build here, naming the source, the
  table, the var that points at it and the columns found (instead of a SQL error several
  models later). Then every column the package parses (required or optional) comes as text
  under its lower-case name, whatever its type in the warehouse (TIMESTAMP, TIMESTAMPTZ,
  BOOLEAN, DOUBLE, INTEGER, VARCHAR), and any other column as it is. Staging then parses one
  kind of input, and the package's unit tests, whose fixtures dbt casts to the base view's
  column types, hold on typed and text sources alike.
#}
{% macro proactive_recs_source_select(name) -%}
    {%- if not execute -%}{{ return('*') }}{%- endif -%}
    {%- set relation = source('proactive_recs', name) -%}
    {%- set columns = adapter.get_columns_in_relation(relation) -%}
    {%- if columns | length == 0 -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: source '" ~ name ~ "' (" ~ relation ~ ") was not found or has no columns. "
            ~ "Load it, or point the package at it with the var proactive_recs_" ~ name ~ "_table "
            ~ "(and proactive_recs_source_schema / proactive_recs_source_database).") }}
    {%- endif -%}
    {%- set present = columns | map(attribute='name') | map('lower') | list -%}
    {%- set missing = proactive_recs_required_columns()[name] | reject('in', present) | list -%}
    {%- if missing -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: source '" ~ name ~ "' (" ~ relation ~ ", var proactive_recs_" ~ name
            ~ "_table) is missing required column(s): " ~ missing | join(', ') ~ ". Present: "
            ~ present | join(', ') ~ ". See docs/raw_data.md.") }}
    {%- endif -%}
    {%- set parsed = proactive_recs_required_columns()[name] + proactive_recs_optional_columns()[name] -%}
    {%- set parts = [] -%}
    {%- for column in columns -%}
        {%- if column.name | lower in parsed -%}
            {%- do parts.append(proactive_recs_as_text(column) ~ ' as ' ~ column.name | lower) -%}
        {%- else -%}
            {%- do parts.append(adapter.quote(column.name)) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return(parts | join(',\n    ')) }}
{%- endmacro %}


{#
  A source column as text, losslessly and with its instant pinned: a timestamp with a zone
  keeps its offset; a timestamp or date without one is UTC (the usual warehouse convention)
  and is written with +00:00, so staging reads the same instant whatever the session's time
  zone. Text stays as it is (text without an offset is read in the session's zone).
#}
{% macro proactive_recs_as_text(column) -%}
    {{ return(adapter.dispatch('proactive_recs_as_text', 'proactive_recs')(column)) }}
{%- endmacro %}

{% macro default__proactive_recs_as_text(column) -%}
    cast({{ adapter.quote(column.name) }} as {{ dbt.type_string() }})
{%- endmacro %}

{% macro duckdb__proactive_recs_as_text(column) -%}
    {%- set data_type = column.data_type | upper -%}
    {%- set name = adapter.quote(column.name) -%}
    {%- if data_type in ('TIMESTAMP', 'DATETIME', 'TIMESTAMP_NS', 'TIMESTAMP_MS', 'TIMESTAMP_S') -%}
        strftime(cast({{ name }} as timestamp), '%Y-%m-%d %H:%M:%S.%f') || '+00:00'
    {%- elif data_type == 'DATE' -%}
        strftime({{ name }}, '%Y-%m-%d') || ' 00:00:00+00:00'
    {%- else -%}
        cast({{ name }} as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}

{% macro snowflake__proactive_recs_as_text(column) -%}
    {%- set data_type = column.data_type | upper -%}
    {%- set name = adapter.quote(column.name) -%}
    {%- if data_type.startswith('TIMESTAMP_TZ') or data_type.startswith('TIMESTAMP_LTZ') -%}
        to_varchar({{ name }}, 'YYYY-MM-DD"T"HH24:MI:SS.FF9TZH:TZM')
    {%- elif data_type.startswith('TIMESTAMP') or data_type.startswith('DATETIME') -%}
        to_varchar({{ name }}, 'YYYY-MM-DD HH24:MI:SS.FF9') || '+00:00'
    {%- elif data_type == 'DATE' -%}
        to_varchar({{ name }}, 'YYYY-MM-DD') || ' 00:00:00+00:00'
    {%- else -%}
        cast({{ name }} as {{ dbt.type_string() }})
    {%- endif -%}
{%- endmacro %}


{#
  Bookkeeping columns every stg_<source>_audited model adds to the raw row:
  raw_key (how to find the row in the source), audit_row_id (unique per raw row) and
  rejection_reason (null = clean). stg_<source> drops them; rejected_rows keeps them.
#}
{% macro audit_columns() -%}
    {{ return(['raw_key', 'audit_row_id', 'rejection_reason']) }}
{%- endmacro %}


{#
  The shared tail of every audited staging model: reason = the row's own defect, else
  'duplicate' for every row after the first of its natural key (ranked by order_by, then
  raw_key, then the whole row); audit_row_id numbers the copies of a raw key so that exact
  copies stay distinguishable. Rows that tie on order_by and raw_key but differ elsewhere
  (e.g. in an extra column) are ordered by a fingerprint of the whole row, so the same row is
  kept and gets the same audit id in every build, whatever order the source returns them in.
  Exact copies tie on every column: the copy numbered 1 is the one kept, so the reason and
  the audit id are paired the same way in every build (two independent row_number() windows
  would pair them at random). row_alias is the CTE the final select reads.
#}
{% macro audit_row_columns(source_name, natural_key, order_by, row_alias='checked') -%}
    {%- set fingerprint = row_fingerprint(row_alias) -%}
    {%- set copy_number -%}
        row_number() over (partition by raw_key, row_defect order by {{ order_by }}, {{ fingerprint }})
    {%- endset -%}
    case
        when row_defect is not null then row_defect
        when
            rank() over (
                partition by {{ natural_key | join(', ') }}, row_defect
                order by {{ order_by }}, raw_key, {{ fingerprint }}
            ) > 1
            or {{ copy_number }} > 1
            then 'duplicate'
    end as rejection_reason,
    {{ dbt.hash(dbt.concat([
        "'" ~ source_name ~ "'", "'|'", 'raw_key', "'|'", "coalesce(row_defect, '')", "'|'",
        "cast(" ~ copy_number ~ " as " ~ dbt.type_string() ~ ")"
    ])) }} as audit_row_id
{%- endmacro %}


{#
  A fingerprint of a whole row of the relation or CTE `alias` (every column), for ordering
  rows that tie on everything else in the same way in every build: a function of the row's
  values alone, so the source's row order cannot change it.
#}
{% macro row_fingerprint(alias) -%}
    {{ return(adapter.dispatch('row_fingerprint', 'proactive_recs')(alias)) }}
{%- endmacro %}

{% macro default__row_fingerprint(alias) -%}
    md5(cast({{ alias }} as {{ dbt.type_string() }}))
{%- endmacro %}

{#
  DuckDB hashes the row itself (64 bits): casting every row to text for md5 made
  stg_transactions_audited take 6.4 s at 2M rows, 2.9 s with the hash. The hash is DuckDB's
  own, the same in every build on one DuckDB version; a version that changed it could only
  change which of two rows equal on every contract column but differing elsewhere (an extra
  column) is the one kept.
#}
{% macro duckdb__row_fingerprint(alias) -%}
    hash({{ alias }})
{%- endmacro %}

{% macro snowflake__row_fingerprint(alias) -%}
    md5(to_varchar(object_construct_keep_null({{ alias }}.*)))
{%- endmacro %}

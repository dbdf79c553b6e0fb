{#
  Gates against silent loss. They run as tests on the staging and intermediate models, so
  in `dbt build` a failure stops every model downstream before the public tables are
  replaced: the last good audience stays published. Each stops the build with a message
  naming the source, the reasons and the counts.
#}

{#
  A source may lose at most a share of its raw rows to rejections: the var
  proactive_recs_max_rejected_share, a number for every source (default 0.2) or a mapping
  {source: share} (sources not named get 0.2). Put on the last model that decides about the
  source's rows: stg_<source>_audited for users and items; int_<source> for transactions,
  sends and events, whose rows may also be orphans (int_orphan_rows), counted here too.
#}
{% test rejected_share_within_limit(model, source_name) %}
    {%- set setting = var('proactive_recs_max_rejected_share', 0.2) -%}
    {%- if setting is mapping -%}
        {%- set limit = setting.get(source_name, 0.2) | float -%}
    {%- else -%}
        {%- set limit = setting | float -%}
    {%- endif -%}
    {#- refs outside `execute`, so that dbt sees them when it parses the test -#}
    {%- set audited = ref('stg_' ~ source_name ~ '_audited') -%}
    {%- set orphan_rows = ref('int_orphan_rows') if source_name in ['transactions', 'notification_sends', 'notification_events'] else none -%}
    {%- if execute -%}
        {%- if source_name in ['transactions', 'notification_sends', 'notification_events'] -%}
            {%- set reasons -%}
                select coalesce(orphans.rejection_reason, audited.rejection_reason), count(*)
                from {{ audited }} as audited
                left join {{ orphan_rows }} as orphans
                    on audited.audit_row_id = orphans.audit_row_id
                group by 1 order by 2 desc
            {%- endset -%}
        {%- else -%}
            {%- set reasons = "select rejection_reason, count(*) from " ~ audited ~ " group by 1 order by 2 desc" -%}
        {%- endif -%}
        {%- set counts = run_query(reasons) -%}
        {%- set ns = namespace(total=0, rejected=0, reasons=[]) -%}
        {%- for row in counts.rows -%}
            {%- set ns.total = ns.total + row[1] -%}
            {%- if row[0] is not none -%}
                {%- set ns.rejected = ns.rejected + row[1] -%}
                {%- do ns.reasons.append(row[0] ~ ' ' ~ row[1]) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if ns.total > 0 and ns.rejected / ns.total > limit -%}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: source '" ~ source_name ~ "' lost " ~ ns.rejected ~ " of its "
                ~ ns.total ~ " raw rows (" ~ ((100.0 * ns.rejected / ns.total) | round(1)) ~ " %), "
                ~ "more than the allowed " ~ (100.0 * limit) ~ " %: " ~ ns.reasons | join(', ')
                ~ ". See rejected_rows and docs/raw_data.md; if this is expected, raise the var "
                ~ "proactive_recs_max_rejected_share (e.g. {" ~ source_name ~ ": 0.5}).") }}
        {%- endif -%}
    {%- endif -%}
    select 1 as gate where 1 = 0
{% endtest %}


{#
  The model must have rows, unless the var proactive_recs_allow_empty lists `table_label` (or is
  true): an empty users, items or interactions table means nothing can be recommended and
  would otherwise publish empty audiences with a green build.
#}
{% test not_empty_unless_allowed(model, table_label) %}
    {%- set allowed = var('proactive_recs_allow_empty', []) -%}
    {%- set is_allowed = (allowed is sameas true)
        or (allowed is iterable and allowed is not string and table_label in allowed) -%}
    {%- if execute and not is_allowed -%}
        {%- set result = run_query("select count(*) from " ~ model) -%}
        {%- if result.columns[0].values()[0] == 0 -%}
            {{ exceptions.raise_compiler_error(
                "proactive_recs: " ~ table_label ~ " is empty (" ~ model ~ "): every row of its source "
                ~ "was rejected or the source is empty, so nothing would be planned. See "
                ~ "rejected_rows; if an empty " ~ table_label ~ " is expected, add it to the var "
                ~ "proactive_recs_allow_empty (e.g. [" ~ table_label ~ "]).") }}
        {%- endif -%}
    {%- endif -%}
    select 1 as gate where 1 = 0
{% endtest %}


{# Rows of one kind in run_diagnostics (used with severity warn: shown in dbt's output). #}
{% test no_rows_of_kind(model, diagnostic) %}
    select *
    from {{ model }}
    where diagnostic = '{{ diagnostic }}'
{% endtest %}

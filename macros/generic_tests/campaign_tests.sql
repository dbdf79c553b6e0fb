{#
  Every campaign row meets the campaign rules (stg_campaigns.campaign_problem is null). A bad
  row fails the test, and dbt's log names each campaign, the column and the value as given,
  instead of a bare "Got N results": a misconfigured campaign stops the build rather than
  sending something nobody meant.
#}
{% test campaigns_are_valid(model) %}
    {%- set problems -%}
        select
            coalesce(campaign_id, '<no campaign_id>') as campaign_id,
            campaign_problem
        from {{ model }}
        where campaign_problem is not null
    {%- endset -%}
    {%- if execute -%}
        {%- set result = run_query(problems ~ " order by 1, 2") -%}
        {%- if result.rows | length > 0 -%}
            {%- set named = [] -%}
            {%- for row in result.rows -%}
                {%- do named.append("campaign '" ~ row[0] ~ "': " ~ row[1]) -%}
            {%- endfor -%}
            {%- do exceptions.warn(
                "proactive_recs: the campaigns table (var proactive_recs_campaigns_table, else the "
                ~ "seed campaigns) has invalid campaigns; nothing is planned until they are fixed: "
                ~ named | join('; ') ~ ". Rules: seeds/reference/_reference_seeds.yml.") -%}
        {%- endif -%}
    {%- endif -%}
    {{ problems }}
{% endtest %}

{#
  A model's table as earlier runs left it, or none before the first run.

  The planner must count the sends that earlier runs handed to the send tool (the send
  ledger), but those tables (notification_sync, notification_log) are built from this run's
  plan: a ref() to them would be a cycle. So the ledger reads the table by name, looked up in
  dbt's graph (wherever the project puts it: custom schema or alias included), without a ref
  and therefore without a DAG edge. It sees the table as the previous run committed it,
  because those tables are only appended to after this run's plan is built.
#}
{% macro proactive_recs_previous_relation(model_name) -%}
    {%- if not execute -%}{{ return(none) }}{%- endif -%}
    {%- set found = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and node.name == model_name
              and node.package_name == 'proactive_recs' -%}
            {%- do found.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- if found | length == 0 -%}{{ return(none) }}{%- endif -%}
    {%- set node = found[0] -%}
    {{ return(adapter.get_relation(
        database=node.database, schema=node.schema, identifier=node.alias or node.name)) }}
{%- endmacro %}

{#
  The relation a var names: 'table', 'schema.table' or 'database.schema.table' (a table alone
  is looked up in the target schema, where this project's own seeds land). At run time a
  relation that does not exist stops the build naming the var, the value and the tables that
  were found in that schema.
#}
{% macro proactive_recs_relation_from_var(var_name) -%}
    {%- set value = var(var_name) | string | trim -%}
    {%- set parts = value.split('.') -%}
    {%- if parts | length == 1 -%}
        {%- set database, schema, identifier = target.database, target.schema, parts[0] -%}
    {%- elif parts | length == 2 -%}
        {%- set database, schema, identifier = target.database, parts[0], parts[1] -%}
    {%- elif parts | length == 3 -%}
        {%- set database, schema, identifier = parts[0], parts[1], parts[2] -%}
    {%- else -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: var " ~ var_name ~ " = '" ~ value ~ "' is not 'table', "
            ~ "'schema.table' or 'database.schema.table'.") }}
    {%- endif -%}
    {%- if not execute -%}
        {{ return(api.Relation.create(database=database, schema=schema, identifier=identifier)) }}
    {%- endif -%}
    {%- set relation = adapter.get_relation(database=database, schema=schema, identifier=identifier) -%}
    {%- if relation is none -%}
        {%- set found = [] -%}
        {%- set listed = list_relations_without_caching(
                api.Relation.create(database=database, schema=schema)) -%}
        {%- for row in listed.rows -%}
            {%- do found.append(row['name']) -%}
        {%- endfor -%}
        {{ exceptions.raise_compiler_error(
            "proactive_recs: var " ~ var_name ~ " = '" ~ value ~ "': no table or view "
            ~ identifier ~ " in " ~ database ~ "." ~ schema ~ ". Found there: "
            ~ (found | sort | join(', ') if found else 'nothing (does the schema exist?)') ~ ".") }}
    {%- endif -%}
    {{ return(relation) }}
{%- endmacro %}

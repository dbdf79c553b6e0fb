{#
  The vectorized Python UDTF behind partitioned_mf_scores (Snowflake only): one call per
  (user bucket, item block) partition, handler proactive_recs.warehouse.partitioned_topk.
  PartitionTopK from the library zip on the stage, packages and Python version from the same
  vars as the Python models. Created (or replaced) by the model's pre-hook on every run, so
  it always runs the staged library.
#}
{% macro proactive_recs_partition_topk_function_name() -%}
    {{ target.database }}.{{ target.schema }}.proactive_recs_partition_topk
{%- endmacro %}

{% macro proactive_recs_create_partition_topk_function() -%}
create or replace function {{ proactive_recs_partition_topk_function_name() }}(
    side varchar,
    position number,
    factors array,
    servable boolean,
    boost float,
    excluded array,
    k_items number,
    k_users number
)
returns table (direction varchar, owner_position number, member_position number, score float)
language python
runtime_version = '{{ var("proactive_recs_snowflake_python_version") }}'
packages = ('{{ var("proactive_recs_snowflake_packages") | join("', '") }}')
imports = ('{{ (["@" ~ var("proactive_recs_snowflake_stage") ~ "/proactive_recs.zip"] + var("proactive_recs_snowflake_extra_imports")) | join("', '") }}')
handler = 'PartitionTopK'
as $$
from proactive_recs.warehouse.partitioned_topk import PartitionTopK
$$
{%- endmacro %}

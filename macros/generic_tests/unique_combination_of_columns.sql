{#
  The combination of the given columns is unique (no dbt_utils here: the hub is unreachable).
  Returns one row per duplicated combination.
#}
{% test unique_combination_of_columns(model, columns) %}
    select {{ columns | join(', ') }}, count(*) as n_rows
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}

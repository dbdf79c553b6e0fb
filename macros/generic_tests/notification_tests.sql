{#
  No sendable row for a suppressed or unknown user (DESIGN.md §6), whatever the input.
  Returns the offending rows.
#}
{% test no_suppressed_user(model, column_name='user_id') %}
    select model_rows.{{ column_name }}
    from {{ model }} as model_rows
    left join {{ ref('int_user_eligibility') }} as eligibility
        on model_rows.{{ column_name }} = eligibility.user_id
    where eligibility.user_id is null or eligibility.is_suppressed
{% endtest %}


{# Holdout rows are never scheduled: they measure lift and must not be sent. #}
{% test holdout_rows_are_unscheduled(model) %}
    select *
    from {{ model }}
    where is_holdout and scheduled_send_at is not null
{% endtest %}

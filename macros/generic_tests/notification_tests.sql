{#
  No sendable row for a user who may not be sent on the row's channel, or an unknown user
  (DESIGN.md §6), whatever the input. `channel_column` names the model's channel column;
  `channel` fixes it for a model of one channel (the e-mail digest). Returns the offending rows.
#}
{% test no_suppressed_user(model, column_name='user_id', channel_column='channel', channel=none) %}
    {%- set row_channel = "'" ~ channel ~ "'" if channel else 'model_rows.' ~ channel_column %}
    select model_rows.{{ column_name }}
    from {{ model }} as model_rows
    left join {{ ref('int_user_eligibility') }} as eligibility
        on model_rows.{{ column_name }} = eligibility.user_id
    where
        eligibility.user_id is null
        or eligibility.is_suppressed
        or ({{ row_channel }} = 'email' and not eligibility.is_email_eligible)
        or ({{ row_channel }} = 'push' and not eligibility.is_push_eligible)
        or {{ row_channel }} not in ('email', 'push')
{% endtest %}


{# Holdout rows are never scheduled: they measure lift and must not be sent. #}
{% test holdout_rows_are_unscheduled(model) %}
    select *
    from {{ model }}
    where is_holdout and scheduled_send_at is not null
{% endtest %}

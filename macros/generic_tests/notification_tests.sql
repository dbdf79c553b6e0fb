{#
  No sendable row for a user who may not be sent on the row's channel, or an unknown user
  (docs/frequency_rules.md), whatever the input. `channel_column` names the model's channel column;
  `channel` fixes it for a model of one channel (the e-mail digest). Returns the offending rows.
#}
{#
  `current_run_only`: for append-only tables (notification_sync), check only the rows this run
  added: a row synced by an earlier run whose user opted out since is history, not a new send.
#}
{% test no_suppressed_user(model, column_name='user_id', channel_column='channel', channel=none,
                           current_run_only=false) %}
    {%- set row_channel = "'" ~ channel ~ "'" if channel else 'model_rows.' ~ channel_column %}
    select model_rows.{{ column_name }}
    from {{ model }} as model_rows
    left join {{ ref('int_user_eligibility') }} as eligibility
        on model_rows.{{ column_name }} = eligibility.user_id
    {% if current_run_only -%}
        inner join {{ ref('int_run_context') }} as run_context
            on {{ utc_timestamp_ntz('model_rows.run_date') }} = run_context.run_date
    {%- endif %}
    where
        eligibility.user_id is null
        or eligibility.is_suppressed
        or ({{ row_channel }} = 'email' and not eligibility.is_email_eligible)
        or ({{ row_channel }} = 'push' and not eligibility.is_push_eligible)
        or {{ row_channel }} not in {{ proactive_recs_channel_list() }}
{% endtest %}


{# Holdout rows are never scheduled: they measure lift and must not be sent. #}
{% test holdout_rows_are_unscheduled(model) %}
    select *
    from {{ model }}
    where is_holdout and scheduled_send_at is not null
{% endtest %}

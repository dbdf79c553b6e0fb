{#
  Vars read under other names before issue 14: set under the old name, a setting would now be
  ignored without a word. A warning names each old var that is set and its new name. Names a
  host project may well use for itself (run_date, horizon_days) are left out.
#}
{% macro proactive_recs_renamed_vars() -%}
    {%- set renamed = {
        'product_item_id_pattern': 'proactive_recs_product_item_id_pattern',
        'assume_opt_in_when_unknown': 'proactive_recs_assume_opt_in_when_unknown',
        'user_filter': 'proactive_recs_user_filter',
        'user_booster': 'proactive_recs_user_booster',
        'item_filter': 'proactive_recs_item_filter',
        'item_booster': 'proactive_recs_item_booster',
        'recommender_params': 'proactive_recs_recommender_params',
        'eval_cutoff': 'proactive_recs_eval_cutoff',
        'backtest_weeks': 'proactive_recs_backtest_weeks',
        'backtest_horizon_days': 'proactive_recs_backtest_conversion_days',
        'backtest_campaigns': 'proactive_recs_backtest_campaigns',
        'validation_id_mostly': 'proactive_recs_validation_id_mostly',
    } -%}
    {%- for rule in [
        'email_cap_per_week', 'push_cap_per_week', 'min_hours_between_sends',
        'item_repeat_window_days', 'quiet_hours_start', 'quiet_hours_end', 'default_timezone',
        'holdout_share', 'holdout_salt', 'adaptive_cadence', 'cadence_lookback_days',
        'cadence_ignored_block', 'cadence_grace_hours', 'cadence_floor',
        'email_cadence_ceiling', 'push_cadence_ceiling', 'send_time',
        'send_time_max_delay_hours'] -%}
        {%- do renamed.update({rule: 'proactive_recs_frequency_rules: {' ~ rule ~ ': ...}'}) -%}
    {%- endfor -%}
    {{ return(renamed) }}
{%- endmacro %}


{% macro proactive_recs_warn_renamed_vars() -%}
    {%- if execute -%}
        {%- set found = [] -%}
        {%- for old, new in proactive_recs_renamed_vars().items() -%}
            {%- if var(old, none) is not none -%}
                {%- do found.append(old ~ ' -> ' ~ new) -%}
            {%- endif -%}
        {%- endfor -%}
        {%- if found -%}
            {%- do exceptions.warn(
                "proactive_recs: var(s) set under a name the package no longer reads: "
                ~ found | join('; ') ~ ". Rename them (README 'Your data: vars only'); if they "
                ~ "are your project's own, ignore this.") -%}
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}

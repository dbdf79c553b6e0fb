{#
  Confidence intervals for conversion rates and their difference, in SQL that any warehouse
  runs (campaign_lift). Wilson's score interval for a proportion holds for small counts and
  rates near 0, where the normal approximation does not; Newcombe's hybrid score interval
  for a difference of two independent proportions (his method 10, 1998) is built from the two
  Wilson intervals. z = 1.959964: 95 % two-sided.
#}
{% macro proactive_recs_wilson_bound(successes, trials, side, z=1.959964) -%}
    case when {{ trials }} > 0 then (
        ({{ successes }} * 1.0 / {{ trials }}) + {{ z }} * {{ z }} / (2.0 * {{ trials }})
        {{ '-' if side == 'lower' else '+' }} {{ z }} * sqrt(
            ({{ successes }} * 1.0 / {{ trials }}) * (1.0 - {{ successes }} * 1.0 / {{ trials }})
            / {{ trials }}
            + {{ z }} * {{ z }} / (4.0 * {{ trials }} * {{ trials }})
        )
    ) / (1.0 + {{ z }} * {{ z }} / {{ trials }}) end
{%- endmacro %}

{#
  Newcombe's interval for p1 - p0, the rates of two independent groups (successes over
  trials, SQL expressions), from the two Wilson intervals: lower = d - sqrt((p1 - l1)^2 +
  (u0 - p0)^2), upper = d + sqrt((u1 - p1)^2 + (p0 - l0)^2). Null when a group is empty.
#}
{% macro proactive_recs_newcombe_bound(successes1, trials1, successes0, trials0, side) -%}
    {#- nullif: no division by zero, whether or not the warehouse evaluates lazily -#}
    {%- set p1 = '(' ~ successes1 ~ ' * 1.0 / nullif(' ~ trials1 ~ ', 0))' -%}
    {%- set p0 = '(' ~ successes0 ~ ' * 1.0 / nullif(' ~ trials0 ~ ', 0))' -%}
    {%- if side == 'lower' -%}
        {%- set near1 = proactive_recs_wilson_bound(successes1, trials1, 'lower') -%}
        {%- set far0 = proactive_recs_wilson_bound(successes0, trials0, 'upper') -%}
        ({{ p1 }} - {{ p0 }}) - sqrt(
            ({{ p1 }} - {{ near1 }}) * ({{ p1 }} - {{ near1 }})
            + ({{ far0 }} - {{ p0 }}) * ({{ far0 }} - {{ p0 }})
        )
    {%- else -%}
        {%- set far1 = proactive_recs_wilson_bound(successes1, trials1, 'upper') -%}
        {%- set near0 = proactive_recs_wilson_bound(successes0, trials0, 'lower') -%}
        ({{ p1 }} - {{ p0 }}) + sqrt(
            ({{ far1 }} - {{ p1 }}) * ({{ far1 }} - {{ p1 }})
            + ({{ p0 }} - {{ near0 }}) * ({{ p0 }} - {{ near0 }})
        )
    {%- endif -%}
{%- endmacro %}

{#
  Users per group that a two-sided 5 % test with 80 % power needs to detect the difference
  between rates p1 and p0 (normal approximation); null when they are equal.
#}
{% macro proactive_recs_users_needed(p1, p0, z_alpha=1.959964, z_beta=0.841621) -%}
    case when {{ p1 }} <> {{ p0 }} then ceiling(
        (
            {{ z_alpha }} * sqrt(2.0 * (({{ p1 }} + {{ p0 }}) / 2.0) * (1.0 - ({{ p1 }} + {{ p0 }}) / 2.0))
            + {{ z_beta }} * sqrt({{ p1 }} * (1.0 - {{ p1 }}) + {{ p0 }} * (1.0 - {{ p0 }}))
        ) * (
            {{ z_alpha }} * sqrt(2.0 * (({{ p1 }} + {{ p0 }}) / 2.0) * (1.0 - ({{ p1 }} + {{ p0 }}) / 2.0))
            + {{ z_beta }} * sqrt({{ p1 }} * (1.0 - {{ p1 }}) + {{ p0 }} * (1.0 - {{ p0 }}))
        ) / (({{ p1 }} - {{ p0 }}) * ({{ p1 }} - {{ p0 }}))
    ) end
{%- endmacro %}

-- Every raw user row, typed, with the reason it is rejected (null = clean).
-- stg_users keeps the clean rows; rejected_rows collects the others.
-- The raw consent texts (email_opt_in_raw, unsubscribed_at_raw) stay on every row: consent is
-- read from all rows of a user, rejected ones included, and a value that does not parse is
-- a sign, not an absence (int_user_eligibility).
with

source as (

    select * from {{ ref('base_users') }}

),

typed as (

    select
        {{ clean_text('user_id') }} as user_id,
        lower({{ clean_text('email') }}) as email,
        {{ to_utc_timestamp('joined_at') }} as joined_at,
        {{ clean_text('country') }} as country,
        {{ clean_text('timezone') }} as timezone,
        {{ parse_boolean('email_opt_in') }} as email_opt_in,
        {{ to_utc_timestamp('unsubscribed_at') }} as unsubscribed_at,
        {{ star_exclude(proactive_recs_required_columns()['users']) }},

        -- raw text, to tell "null" from "did not parse" and to name a rejected row
        {{ clean_text('joined_at') }} as joined_at_raw,
        {{ clean_text('email_opt_in') }} as email_opt_in_raw,
        {{ clean_text('unsubscribed_at') }} as unsubscribed_at_raw,
        coalesce({{ clean_text('user_id') }}, '<null>') as raw_key

    from source

),

checked as (

    select
        {{ star_exclude(['joined_at_raw']) }},
        case
            when user_id is null then 'null_id'
            when
                (joined_at_raw is not null and joined_at is null)
                or (email_opt_in_raw is not null and email_opt_in is null)
                or (unsubscribed_at_raw is not null and unsubscribed_at is null)
                then 'unparseable_value'
            when joined_at > {{ run_date() }} then 'future_timestamp'
        end as row_defect

    from typed

),

final as (

    -- the first row of a user_id by joined_at is the user; later ones are duplicates
    select
        {{ star_exclude(['row_defect']) }},
        {{ audit_row_columns('users', ['user_id'], 'joined_at, email, country, timezone') }}

    from checked

)

select * from final

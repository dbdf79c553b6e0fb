-- Every raw transaction line, typed and normalised, with the reason it is rejected (null = clean).
-- Only this source's own rules (and its event vocabulary); whether the user and the item exist
-- is a question across sources, answered in int_orphan_rows.
with

source as (

    select * from {{ ref('base_transactions') }}

),

event_type_weights as (

    select * from {{ ref('stg_event_type_weights') }}

),

typed as (

    select
        {{ clean_text('user_id') }} as user_id,
        {{ clean_text('item_id') }} as item_id,
        {{ to_utc_timestamp('occurred_at') }} as occurred_at,
        -- the contract's default: a line with no event type is a purchase
        coalesce(lower({{ clean_text('event_type') }}), 'purchase') as event_type,
        -- a line with no quantity counts once
        coalesce({{ try_cast_numeric('quantity') }}, 1) as quantity,
        {{ try_cast_numeric('amount') }} as amount,
        {{ star_exclude(proactive_recs_required_columns()['transactions']) }},

        {{ clean_text('occurred_at') }} as occurred_at_raw,
        {{ clean_text('quantity') }} as quantity_raw,
        {{ clean_text('amount') }} as amount_raw,
        {{ try_cast_numeric('quantity') }} as quantity_parsed,
        {{ dbt.concat([
            "coalesce(" ~ clean_text('user_id') ~ ", '<null>')", "'|'",
            "coalesce(" ~ clean_text('item_id') ~ ", '<null>')", "'|'",
            "coalesce(" ~ clean_text('occurred_at') ~ ", '<null>')", "'|'",
            "coalesce(" ~ clean_text('event_type') ~ ", '<null>')", "'|'",
            "coalesce(" ~ clean_text('quantity') ~ ", '<null>')"
        ]) }} as raw_key

    from source

),

checked as (

    select
        {{ star_exclude(['occurred_at_raw', 'quantity_raw', 'amount_raw', 'quantity_parsed'], 'typed') }},
        event_type_weights.weight as event_weight,
        coalesce(event_type_weights.is_conversion, false) as is_conversion,
        case
            when typed.user_id is null or typed.item_id is null then 'null_id'
            when
                typed.occurred_at is null
                or (typed.quantity_raw is not null and typed.quantity_parsed is null)
                or (typed.amount_raw is not null and typed.amount is null)
                then 'unparseable_value'
            when typed.occurred_at > {{ run_date() }} then 'future_timestamp'
            when typed.event_type = 'cancellation' then 'cancellation'
            when event_type_weights.event_type is null then 'unknown_event_type'
            when typed.quantity <= 0 then 'non_positive_quantity'
            {%- if var('proactive_recs_product_item_id_pattern') %}
            when not {{ regex_search('typed.item_id', var('proactive_recs_product_item_id_pattern')) }}
                then 'non_product_item'
            {%- endif %}
        end as row_defect

    from typed
    left join event_type_weights on typed.event_type = event_type_weights.event_type

),

final as (

    -- lines identical on every contract column are one line sent twice
    select
        {{ star_exclude(['row_defect']) }},
        {{ audit_row_columns(
            'transactions',
            ['user_id', 'item_id', 'occurred_at', 'event_type', 'quantity', 'amount'],
            'occurred_at') }}

    from checked

)

select * from final

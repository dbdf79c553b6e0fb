-- Clean interaction lines: known user and product, parsed, in the past, deduplicated;
-- event_type lower-case with its weight and conversion flag from stg_event_type_weights.
with

audited as (

    select * from {{ ref('stg_transactions_audited') }}

),

final as (

    select {{ star_exclude(audit_columns()) }}
    from audited
    where rejection_reason is null

)

select * from final

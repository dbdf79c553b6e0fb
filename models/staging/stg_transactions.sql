-- Interaction lines clean by this source's own rules: ids present, parsed, in the past,
-- deduplicated (whether user and item exist: int_transactions);
-- event_type lower-case with its weight and conversion flag from stg_event_type_weights.
with

audited as (

    select * from {{ ref('stg_transactions_audited') }}

),

final as (

    -- audit_row_id stays: int_orphan_rows names the rows whose ids are unknown by it
    select {{ star_exclude(['raw_key', 'rejection_reason']) }}
    from audited
    where rejection_reason is null

)

select * from final

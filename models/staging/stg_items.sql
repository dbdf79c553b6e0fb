-- Clean items: one row per item_id, typed; availability window [available_from, available_until)
-- in UTC, null = open. Extra source columns follow unchanged.
with

audited as (

    select * from {{ ref('stg_items_audited') }}

),

final as (

    select {{ star_exclude(audit_columns()) }}
    from audited
    where rejection_reason is null

)

select * from final

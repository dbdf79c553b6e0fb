-- One row per user who gets this run's digest e-mail: the ranked items as a JSON array of
-- {item_id, rank, score, title, url, price, image_url}. Holdout users get no digest.
with

audience as (

    select * from {{ ref('notification_audience') }}

),

campaigns as (

    select * from {{ ref('stg_campaigns') }}

),

final as (

    select
        audience.user_id,
        audience.email,
        audience.campaign_id,
        audience.send_key,
        audience.scheduled_send_at,
        audience.digest_items_json as items,
        audience.score as chance_of_any_interaction,
        audience.run_date,
        audience.updated_at

    from audience
    inner join campaigns on audience.campaign_id = campaigns.campaign_id
    where
        campaigns.campaign_type = 'digest'
        and not audience.is_holdout

)

select * from final

//! `sendTestAlert`: posts a test event to the config's `[alerts] webhook`
//! (the `tokenrelay alert test` command). The sending is the core's
//! [`tokenrelay::alerts::send_test`]; this only resolves the site.

use tokenrelay::Broker;
use tokenrelay_site::{Site, SiteOptions, StoreChoice};

use crate::cache::PurgeOptions;
use crate::error::AddonError;

/// Posts a test event now; fails with `alert_failed` without a webhook or when it refuses.
pub async fn send_test_alert(options: PurgeOptions) -> Result<(), AddonError> {
    let site =
        Site::resolve(SiteOptions::of(&options.config_path, &options.cwd, &options.env), StoreChoice::AsConfigured)?;
    let broker = Broker::from_env(&site.env)?;
    tokenrelay::alerts::send_test(&broker).await?;
    Ok(())
}

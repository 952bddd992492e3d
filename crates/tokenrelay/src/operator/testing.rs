//! What the operator's end-to-end tests relay through: a token endpoint,
//! the API it guards, and Redis behind the Upstash protocol, all real.

use testkit::config::{SiteConfig, UpstreamConfig, UpstreamRelay, oauth2};

use crate::broker::Broker;
use crate::config::{Config, Env};

/// The servers behind one upstream, `api`, kept running while this lives.
pub(super) struct Servers {
    pub(super) upstash: testkit::Upstash,
    pub(super) tokens: testkit::TokenServer,
    pub(super) api: testkit::ApiServer,
    _redis: testkit::RedisServer,
}

impl Servers {
    pub(super) async fn start() -> Self {
        let redis = testkit::RedisServer::start().await.unwrap();
        let upstash = testkit::Upstash::start(&redis).await.unwrap();
        let tokens = testkit::TokenServer::start(testkit::TokenServerConfig::new("id", "secret")).await.unwrap();
        let api = testkit::ApiServer::start(&tokens).await.unwrap();
        Self { upstash, tokens, api, _redis: redis }
    }

    /// The broker of a site whose one upstream, `api`, relays as `relay` says.
    pub(super) fn broker(&self, relay: impl FnOnce(UpstreamRelay) -> UpstreamRelay) -> Broker {
        let config = SiteConfig::new()
            .upstream(
                UpstreamConfig::new("api", self.api.url(), oauth2(self.tokens.url(), "API_ID", "API_SECRET"))
                    .relay(relay),
            )
            .render();
        let env = Env::from_pairs([
            ("UPSTASH_REDIS_REST_URL", self.upstash.url()),
            ("UPSTASH_REDIS_REST_TOKEN", self.upstash.token().to_owned()),
            ("TOKENRELAY_ENCRYPTION_KEY", testkit::base64_key()),
            ("API_ID", "id".to_owned()),
            ("API_SECRET", "secret".to_owned()),
        ]);
        Broker::new(Config::parse(&config, "tokenrelay.toml", &env).unwrap(), &env).unwrap()
    }
}

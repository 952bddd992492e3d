//! Routes and relay sections for unit tests, built without the config file:
//! a test names only the fields it is about, so a new field changes this
//! file, not every test that builds a route.

use http::Method;

use super::{Inject, Route, RoutePattern, UpstreamRelay};

impl Route {
    /// `pattern` for `GET`, every option off.
    pub(crate) fn test(pattern: &str) -> Self {
        Route {
            pattern: RoutePattern::parse(pattern).expect("a test's route pattern parses"),
            methods: vec![Method::GET],
            cache_control: None,
            path_params: false,
            forward_range: false,
            cache: None,
            budget: None,
            caller: None,
        }
    }

    /// The same for `methods`.
    pub(crate) fn with_methods(mut self, methods: &[Method]) -> Self {
        self.methods = methods.to_vec();
        self
    }
}

impl UpstreamRelay {
    /// `routes`, with the token injected as `inject` and nothing else set.
    pub(crate) fn test(routes: Vec<Route>, inject: Inject) -> Self {
        UpstreamRelay {
            routes,
            inject,
            headers: Vec::new(),
            rate_limit: None,
            budget: None,
            cooldown: Default::default(),
        }
    }

    /// The same, with `headers` sent upstream.
    pub(crate) fn with_headers(mut self, headers: Vec<(http::HeaderName, crate::param::Param)>) -> Self {
        self.headers = headers;
        self
    }
}

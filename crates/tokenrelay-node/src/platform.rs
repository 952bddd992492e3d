//! The platforms' request headers, as the core declares them
//! ([`tokenrelay::platform`]), for `tokenrelay/fetch`: where the visitor's
//! address and the request id come from on each platform.

use napi_derive::napi;

/// One platform and the headers it sets itself, replacing the visitor's.
#[napi(object)]
pub struct PlatformHeaders {
    /// Its name in the `clientIp` option (`"vercel"`).
    pub name: String,
    /// The environment variable it sets in its functions (`VERCEL`).
    pub env_var: String,
    /// The visitor's address, from the connection.
    pub client_ip_header: String,
    /// The platform's id of the request.
    pub request_id_header: String,
}

/// Every platform the relay knows, in the order `tokenrelay/fetch` looks for them.
#[napi(js_name = "platforms")]
pub fn platforms() -> Vec<PlatformHeaders> {
    tokenrelay::platform::PLATFORMS
        .iter()
        .map(|p| PlatformHeaders {
            name: p.name.to_owned(),
            env_var: p.env_var.to_owned(),
            client_ip_header: p.client_ip_header.as_str().to_owned(),
            request_id_header: p.request_id_header.as_str().to_owned(),
        })
        .collect()
}

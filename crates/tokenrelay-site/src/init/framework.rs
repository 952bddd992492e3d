//! `init --framework`: the relay served by the site's own framework through
//! `tokenrelay/fetch`, instead of the platform's Rust function. One route
//! file, written only where none is; Next.js also gets `next.config.mjs`
//! when it has no config yet (Netlify Functions get theirs in `netlify.toml`,
//! see [`super::netlify`]).

use std::str::FromStr;

use super::{Plan, conflict};
use crate::Error;

/// The frameworks `init` writes a route for (`--framework`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framework {
    Next,
    Astro,
    SvelteKit,
    NetlifyFunctions,
}

/// The names `--framework` takes, in the order the CLI lists them.
const NAMES: &str = "next, astro, sveltekit, netlify-functions";

const NEXT_CONFIGS: [&str; 4] = ["next.config.js", "next.config.mjs", "next.config.ts", "next.config.cjs"];

impl FromStr for Framework {
    type Err = Error;

    /// `--framework`'s value; an error names the option `framework`.
    fn from_str(name: &str) -> Result<Self, Error> {
        match name {
            "next" => Ok(Self::Next),
            "astro" => Ok(Self::Astro),
            "sveltekit" => Ok(Self::SvelteKit),
            "netlify-functions" => Ok(Self::NetlifyFunctions),
            _ => Err(Error::invalid_option("framework", format!("{name:?} is not one of {NAMES}"))),
        }
    }
}

impl Framework {
    /// The route file, relative to the site, and its text.
    fn route(self, plan: &Plan) -> (&'static str, &'static str) {
        match self {
            // Next.js reads `src/app` when the site keeps its app there.
            Self::Next if plan.dir.join("src/app").is_dir() => {
                ("src/app/api/relay/[...path]/route.ts", include_str!("templates/frameworks/next-route.ts"))
            }
            Self::Next => ("app/api/relay/[...path]/route.ts", include_str!("templates/frameworks/next-route.ts")),
            Self::Astro => ("src/pages/api/relay/[...path].ts", include_str!("templates/frameworks/astro-endpoint.ts")),
            Self::SvelteKit => {
                ("src/routes/api/relay/[...path]/+server.ts", include_str!("templates/frameworks/sveltekit-server.ts"))
            }
            Self::NetlifyFunctions => {
                ("netlify/functions/relay.mts", include_str!("templates/frameworks/netlify-function.mts"))
            }
        }
    }
}

/// Plans the route file (and Next.js's config); returns the steps left to the user.
pub(crate) fn plan(plan: &mut Plan, framework: Framework) -> Result<Vec<String>, Error> {
    let (file, text) = framework.route(plan);
    match plan.read(file)? {
        None => plan.set(file, None, text.to_owned(), "the relay's route, served by tokenrelay/fetch".to_owned())?,
        Some(existing) if existing == text => {}
        Some(_) => {
            return Err(conflict(
                file,
                "already exists with other content: merge tokenrelay/fetch's handler into it by hand \
                 (see the README's framework examples), or remove it and run init again",
            ));
        }
    }
    let mut steps = Vec::new();
    if framework == Framework::Next {
        let config = NEXT_CONFIGS.iter().find(|f| plan.dir.join(f).is_file());
        match config {
            None => plan.set(
                "next.config.mjs",
                None,
                include_str!("templates/frameworks/next-config.mjs").to_owned(),
                "serverExternalPackages (the native addon) and outputFileTracingIncludes (tokenrelay.toml)".to_owned(),
            )?,
            Some(config) if !plan.read(config)?.unwrap_or_default().contains("\"tokenrelay\"") => steps.push(format!(
                "in {config}, add \"tokenrelay\" to serverExternalPackages (the native addon must be loaded, not \
                 bundled) and outputFileTracingIncludes: {{ \"/api/relay/**\": [\"./tokenrelay.toml\"] }} \
                 (the relay's function must carry its config)"
            )),
            Some(_) => {}
        }
    }
    steps.extend(
        super::missing_packages(plan, &["tokenrelay"])?
            .into_iter()
            .map(|p| format!("install the relay: npm install {p}")),
    );
    Ok(steps)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Action;

    #[test]
    fn each_framework_gets_its_route_file_once() {
        for (name, file) in [
            ("next", "app/api/relay/[...path]/route.ts"),
            ("astro", "src/pages/api/relay/[...path].ts"),
            ("sveltekit", "src/routes/api/relay/[...path]/+server.ts"),
            ("netlify-functions", "netlify/functions/relay.mts"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let mut p = Plan::new(tmp.path().to_owned());
            plan(&mut p, name.parse().unwrap()).unwrap();
            assert!(
                p.changes().iter().any(|c| c.file == file && c.action == Action::Create),
                "{name}: {:?}",
                p.changes()
            );
            p.write().unwrap();
            let text = std::fs::read_to_string(tmp.path().join(file)).unwrap();
            assert!(text.contains("from \"tokenrelay/fetch\""), "{name}");
            let mut again = Plan::new(tmp.path().to_owned());
            plan(&mut again, name.parse().unwrap()).unwrap();
            assert!(again.changes().is_empty(), "{name}: a second run changes {:?}", again.changes());
        }
        let unknown = "gatsby".parse::<Framework>().unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "option framework: \"gatsby\" is not one of next, astro, sveltekit, netlify-functions"
        );
    }

    #[test]
    fn a_route_file_of_the_sites_own_is_never_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("app/api/relay/[...path]");
        std::fs::create_dir_all(&file).unwrap();
        std::fs::write(file.join("route.ts"), "export const GET = () => new Response('mine');\n").unwrap();
        let err = plan(&mut Plan::new(tmp.path().to_owned()), Framework::Next).err().unwrap();
        assert_eq!(err.code(), "init_conflict");
        assert!(err.to_string().starts_with("app/api/relay/[...path]/route.ts: already exists"), "{err}");
    }

    #[test]
    fn next_gets_its_config_only_when_it_has_none() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("src/app")).unwrap();
        let mut fresh = Plan::new(tmp.path().to_owned());
        plan(&mut fresh, Framework::Next).unwrap();
        let files: Vec<&str> = fresh.changes().into_iter().map(|c| c.file).collect();
        assert_eq!(files, ["src/app/api/relay/[...path]/route.ts", "next.config.mjs"]);

        std::fs::write(tmp.path().join("next.config.ts"), "export default {};\n").unwrap();
        let mut own = Plan::new(tmp.path().to_owned());
        let steps = plan(&mut own, Framework::Next).unwrap();
        assert!(own.changes().iter().all(|c| c.file != "next.config.mjs"));
        assert!(
            steps.iter().any(|s| s.starts_with("in next.config.ts, add \"tokenrelay\" to serverExternalPackages")),
            "{steps:?}"
        );
    }
}

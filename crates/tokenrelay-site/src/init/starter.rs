//! The files every platform gets: a starter `tokenrelay.toml`, an
//! `.env.example` naming every variable, and `.gitignore` entries (and on
//! Vercel, `.vercelignore` entries).

use tokenrelay::{Config, DEFAULT_CONFIG_FILE, Env};

use super::{Plan, Platform, failed};
use crate::Error;
use crate::site::is_env_var_name;

/// Written when the site has no config yet: one OAuth2 client-credentials
/// upstream and one route, every line explained.
pub(crate) const STARTER_CONFIG: &str = include_str!("templates/tokenrelay.toml");
const ENV_EXAMPLE: &str = ".env.example";
const GITIGNORE: &str = ".gitignore";
const VERCELIGNORE: &str = ".vercelignore";
/// Heads what `init` appends to a file the user already has.
const ADDED_BY: &str = "# tokenrelay (added by `npx tokenrelay init`)";

/// Plans the starter config when there is none; returns the variables the
/// site's config references, in the order it references them.
pub(crate) fn plan_config(plan: &mut Plan) -> Result<Vec<String>, Error> {
    let text = match plan.read(DEFAULT_CONFIG_FILE)? {
        Some(text) => text,
        None => {
            let summary = "starter config: one OAuth2 client-credentials upstream and one route".to_owned();
            plan.set(DEFAULT_CONFIG_FILE, None, STARTER_CONFIG.to_owned(), summary)?;
            STARTER_CONFIG.to_owned()
        }
    };
    // Resolved against an empty environment, the config lists every variable
    // it references as missing: the names, without reading any value.
    match Config::parse(&text, DEFAULT_CONFIG_FILE, &Env::from_pairs::<String, String>([])) {
        Ok(_) => Ok(Vec::new()),
        Err(tokenrelay::Error::MissingEnv { missing, .. }) => {
            let mut names: Vec<String> = Vec::new();
            for var in missing {
                if !is_env_var_name(&var.name) {
                    return Err(failed(
                        DEFAULT_CONFIG_FILE,
                        format!(
                            "{{ env = {:?} }} ({}) is not an environment variable name ([A-Za-z_][A-Za-z0-9_]*), \
                             so init cannot list it in {ENV_EXAMPLE}: fix the name",
                            var.name, var.used_by
                        ),
                    ));
                }
                if !names.contains(&var.name) {
                    names.push(var.name);
                }
            }
            Ok(names)
        }
        Err(e) => Err(e.into()),
    }
}

/// Plans `.env.example` so that it names each of `names`, adding only the
/// missing ones to an existing file.
pub(crate) fn plan_env_example(plan: &mut Plan, names: &[&str]) -> Result<(), Error> {
    let before = plan.read(ENV_EXAMPLE)?;
    let listed = |name: &str| {
        before.as_deref().is_some_and(|text| {
            text.lines().any(|line| {
                let line = line.trim_start();
                let line = line.strip_prefix("export ").unwrap_or(line);
                line.split('=').next().map(str::trim) == Some(name)
            })
        })
    };
    let missing: Vec<&str> = names.iter().copied().filter(|n| !listed(n)).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lines: String = missing.iter().map(|n| format!("{n}=\n")).collect();
    let after = match &before {
        None => format!(
            "# Every variable tokenrelay needs, by name (npx tokenrelay init). Set them in the\n\
             # platform's settings; for local runs copy this file to .env (never commit .env).\n{lines}"
        ),
        Some(text) => format!("{}\n{ADDED_BY}\n{lines}", with_final_newline(text)),
    };
    plan.set(ENV_EXAMPLE, before, after, format!("names {}", missing.join(", ")))
}

/// Plans `.gitignore` entries: `.env` (local secrets) everywhere, plus the
/// platform's local build state (`.netlify`) or cargo's output (`/target`).
pub(crate) fn plan_gitignore(plan: &mut Plan, platform: Platform) -> Result<(), Error> {
    let wanted: &[&str] = match platform {
        Platform::Netlify => &[".env", ".netlify"],
        Platform::Vercel => &[".env", "/target"],
    };
    plan_ignore(plan, GITIGNORE, wanted, ADDED_BY)
}

/// Plans `.vercelignore` entries, which the Vercel CLI reads with
/// `.gitignore`'s syntax. What it lists, `vercel deploy` does not upload and
/// `vercel dev` does not serve: without `/target`, `vercel dev` serves cargo's
/// output as static files (the function's binary included) and `vercel deploy`
/// uploads it; `.env` holds local secrets and `.netlify` another platform's
/// local state (https://vercel.com/docs/deployments/vercel-ignore).
pub(crate) fn plan_vercelignore(plan: &mut Plan) -> Result<(), Error> {
    const HEADER: &str = "# Never uploaded by `vercel deploy` nor served by `vercel dev` (npx tokenrelay init):\n\
                          # cargo's output (the relay's binary), local secrets, Netlify's local state.";
    plan_ignore(plan, VERCELIGNORE, &["/target", ".env", ".netlify"], HEADER)
}

/// Plans `file` (in `.gitignore`'s syntax) to list each of `wanted`, adding
/// only the missing ones, under `ADDED_BY` in an existing file and under
/// `header` in a new one.
fn plan_ignore(plan: &mut Plan, file: &'static str, wanted: &[&str], header: &str) -> Result<(), Error> {
    let before = plan.read(file)?;
    // `.env`, `/.env` and `.env/` ignore the same file at the root.
    let bare = |line: &str| line.trim().trim_start_matches('/').trim_end_matches('/').to_owned();
    let present: Vec<String> = before.as_deref().unwrap_or_default().lines().map(bare).collect();
    let missing: Vec<&str> = wanted.iter().copied().filter(|w| !present.contains(&bare(w))).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let lines: String = missing.iter().map(|n| format!("{n}\n")).collect();
    let after = match &before {
        None => format!("{header}\n{lines}"),
        Some(text) => format!("{}\n{ADDED_BY}\n{lines}", with_final_newline(text)),
    };
    plan.set(file, before, after, format!("ignores {}", missing.join(", ")))
}

/// `text`, ending with a newline unless empty.
pub(crate) fn with_final_newline(text: &str) -> String {
    if text.is_empty() || text.ends_with('\n') { text.to_owned() } else { format!("{text}\n") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_starter_config_is_valid_once_its_variables_are_set() {
        let env = Env::from_pairs([("EXAMPLE_CLIENT_ID", "id"), ("EXAMPLE_CLIENT_SECRET", "secret")]);
        let config = Config::parse(STARTER_CONFIG, DEFAULT_CONFIG_FILE, &env).unwrap();
        assert_eq!(config.upstreams().map(|u| u.name()).collect::<Vec<_>>(), ["example"]);
    }

    #[test]
    fn variables_are_read_from_the_config_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = Plan::new(dir.path().to_owned());
        assert_eq!(plan_config(&mut plan).unwrap(), ["EXAMPLE_CLIENT_ID", "EXAMPLE_CLIENT_SECRET"]);
    }

    #[test]
    fn existing_ignore_entries_in_any_spelling_are_kept_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(GITIGNORE), "node_modules\n/.env").unwrap();
        let mut plan = Plan::new(dir.path().to_owned());
        plan_gitignore(&mut plan, Platform::Netlify).unwrap();
        assert_eq!(plan.edits[0].after, format!("node_modules\n/.env\n\n{ADDED_BY}\n.netlify\n"));
    }
}

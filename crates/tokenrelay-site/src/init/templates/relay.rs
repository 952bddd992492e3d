//! The Vercel function behind `/api/relay/<upstream>/<path>` (vercel.json
//! rewrites `/api/relay/:path*` here): all of it is `tokenrelay::vercel`.

fn main() -> Result<(), tokenrelay::vercel::Error> {
    tokenrelay::vercel::run()
}

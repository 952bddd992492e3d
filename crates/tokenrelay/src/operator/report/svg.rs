//! Inline SVG charts for the report: stacked bars, lines, and a budget's
//! burn-down. Plain markup, no script: the page is one self-contained file.

use std::fmt::Write as _;

use super::escape;

/// Chart size in SVG units; the page scales it to its column.
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 180.0;
/// Room for the axis labels.
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 22.0;
const TOP: f64 = 8.0;

/// One series of a chart: its name, its colour, a value per label.
pub(super) struct Series<'a> {
    pub(super) name: &'a str,
    pub(super) color: &'a str,
    pub(super) values: Vec<Option<f64>>,
}

/// Bars stacked per label (one per hour or day), `labels` under every few.
pub(super) fn stacked_bars(title: &str, labels: &[String], series: &[Series<'_>]) -> String {
    let totals: Vec<f64> =
        (0..labels.len()).map(|i| series.iter().filter_map(|s| s.values.get(i).copied().flatten()).sum()).collect();
    let max = nice_max(totals.iter().copied().fold(0.0, f64::max));
    let mut svg = open(title, max);
    let slot = (WIDTH - LEFT) / labels.len().max(1) as f64;
    for i in 0..labels.len() {
        let mut y = HEIGHT - BOTTOM;
        for s in series {
            let v = s.values.get(i).copied().flatten().unwrap_or(0.0);
            if v <= 0.0 {
                continue;
            }
            let h = v / max * (HEIGHT - BOTTOM - TOP);
            y -= h;
            let _ = write!(
                svg,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" fill="{}"><title>{} {}: {v}</title></rect>"#,
                LEFT + i as f64 * slot + slot * 0.1,
                slot * 0.8,
                s.color,
                escape(&labels[i]),
                escape(s.name),
            );
        }
    }
    close(svg, labels, series)
}

/// One line per series (a gap where a value is missing).
pub(super) fn lines(title: &str, labels: &[String], series: &[Series<'_>]) -> String {
    let max = nice_max(series.iter().flat_map(|s| s.values.iter().flatten().copied()).fold(0.0, f64::max));
    let mut svg = open(title, max);
    let slot = (WIDTH - LEFT) / labels.len().max(1) as f64;
    for s in series {
        let mut path = String::new();
        let mut pen_up = true;
        for (i, v) in s.values.iter().enumerate() {
            let Some(v) = v else {
                pen_up = true;
                continue;
            };
            let (x, y) = (LEFT + (i as f64 + 0.5) * slot, HEIGHT - BOTTOM - v / max * (HEIGHT - BOTTOM - TOP));
            let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_up { "M" } else { "L" });
            let _ = write!(svg, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{}"/>"#, s.color);
            pen_up = false;
        }
        let _ = write!(svg, r#"<path d="{path}" fill="none" stroke="{}" stroke-width="2"/>"#, s.color);
    }
    close(svg, labels, series)
}

/// A budget's burn-down over its window: what is left after each point
/// (`(fraction of the window, calls left)`), against an even pace.
pub(super) fn burn_down(title: &str, budget: u64, points: &[(f64, f64)], window: &str) -> String {
    let max = nice_max(budget as f64);
    let mut svg = open(title, max);
    let (w, h) = (WIDTH - LEFT, HEIGHT - BOTTOM - TOP);
    let at = |fraction: f64, left: f64| (LEFT + fraction * w, HEIGHT - BOTTOM - left / max * h);
    let (x0, y0) = at(0.0, budget as f64);
    let (x1, y1) = at(1.0, 0.0);
    let _ = write!(
        svg,
        r##"<line x1="{x0:.1}" y1="{y0:.1}" x2="{x1:.1}" y2="{y1:.1}" stroke="#9aa3ad" stroke-dasharray="5 4"><title>even pace</title></line>"##
    );
    let path: String = std::iter::once((0.0, budget as f64))
        .chain(points.iter().copied())
        .enumerate()
        .map(|(i, (f, left))| {
            let (x, y) = at(f, left);
            format!("{}{x:.1},{y:.1} ", if i == 0 { "M" } else { "L" })
        })
        .collect();
    let _ = write!(svg, r##"<path d="{path}" fill="none" stroke="#d9480f" stroke-width="2.5"/>"##);
    let labels = ["window start".to_owned(), window.to_owned(), "window end".to_owned()];
    let series = [Series { name: "calls left", color: "#d9480f", values: Vec::new() }];
    close(svg, &labels, &series)
}

/// The chart's frame: title, the value axis up to `max`.
fn open(title: &str, max: f64) -> String {
    let mut svg = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    for step in 0..=2 {
        let v = max * f64::from(step) / 2.0;
        let y = HEIGHT - BOTTOM - v / max * (HEIGHT - BOTTOM - TOP);
        let _ = write!(
            svg,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{WIDTH}" y2="{y:.1}" stroke="#e3e6ea"/><text x="{:.1}" y="{:.1}" class="axis" text-anchor="end">{}</text>"##,
            LEFT - 6.0,
            y + 4.0,
            short(v)
        );
    }
    svg
}

/// The label axis (a few labels, evenly spread) and the legend.
fn close(mut svg: String, labels: &[String], series: &[Series<'_>]) -> String {
    let slot = (WIDTH - LEFT) / labels.len().max(1) as f64;
    let every = labels.len().div_ceil(8).max(1);
    for (i, label) in labels.iter().enumerate().filter(|(i, _)| i % every == 0 || *i + 1 == labels.len()) {
        let x = LEFT + (i as f64 + 0.5) * slot;
        let _ = write!(svg, r#"<text x="{x:.1}" y="{:.1}" class="axis" text-anchor="middle">{}</text>"#, HEIGHT - 6.0, escape(label));
    }
    svg.push_str("</svg><ul class=\"legend\">");
    for s in series {
        let _ = write!(svg, r#"<li><span style="background:{}"></span>{}</li>"#, s.color, escape(s.name));
    }
    svg.push_str("</ul></figure>");
    svg
}

/// A round value above `max` for the axis (at least 1).
fn nice_max(max: f64) -> f64 {
    if max <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(max.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0].iter().map(|m| m * magnitude).find(|v| *v >= max).unwrap_or(max)
}

/// `1200` as `1.2k`.
fn short(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{:.1}M", v / 1e6),
        v if v >= 1e3 => format!("{:.1}k", v / 1e3),
        v => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axes_end_on_round_values() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(180.0), 200.0);
        assert_eq!(nice_max(2400.0), 2500.0);
        assert_eq!(short(2500.0), "2.5k");
    }

    #[test]
    fn charts_escape_their_names_and_draw_a_bar_per_value() {
        let labels: Vec<String> = (0..3).map(|h| format!("{h:02}h")).collect();
        let series = [Series { name: "<calls>", color: "#1c7ed6", values: vec![Some(1.0), None, Some(3.0)] }];
        let svg = stacked_bars("a & b", &labels, &series);
        assert_eq!(svg.matches("<rect").count(), 2);
        assert!(svg.contains("&lt;calls&gt;") && svg.contains("a &amp; b") && !svg.contains("<calls>"));
    }
}

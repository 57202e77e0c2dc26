//! Charts drawn on the server as inline SVG (no script, no style attribute: the stylesheet
//! colours them by class).

use maud::{html, Markup, PreEscaped};

use crate::domain::time::Millis;

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 8.0;
const TOP: f64 = 10.0;
const BOTTOM: f64 = 26.0;

/// One line of a time series: its class (`sends`, `verified`) and a value per period.
pub struct Line<'a> {
    pub class: &'a str,
    pub values: Vec<u64>,
}

/// A line chart of `lines` over `starts` (the periods' first instants), labelled by `label`
/// (each period's text), described by `aria_label`.
pub fn time_series(aria_label: &str, starts: &[Millis], label: impl Fn(Millis) -> String, lines: &[Line]) -> Markup {
    let max = lines.iter().flat_map(|l| l.values.iter().copied()).max().unwrap_or(0).max(1);
    let n = starts.len().max(1);
    let plot_w = W - LEFT - RIGHT;
    let plot_h = H - TOP - BOTTOM;
    let x = |i: usize| if n == 1 { LEFT + plot_w / 2.0 } else { LEFT + plot_w * i as f64 / (n - 1) as f64 };
    let y = |v: u64| TOP + plot_h - plot_h * v as f64 / max as f64;
    let points = |values: &[u64]| {
        values.iter().enumerate().map(|(i, v)| format!("{:.1},{:.1}", x(i), y(*v))).collect::<Vec<_>>().join(" ")
    };
    // A label at the first, middle and last period.
    let ticks: Vec<usize> = {
        let mut t = vec![0, n / 2, n - 1];
        t.dedup();
        t.into_iter().filter(|i| *i < starts.len()).collect()
    };
    html! {
        svg.chart role="img" aria-label=(aria_label) viewBox=(format!("0 0 {W} {H}")) {
            title { (aria_label) }
            line.axis x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(TOP + plot_h) {}
            line.axis x1=(LEFT) y1=(TOP + plot_h) x2=(W - RIGHT) y2=(TOP + plot_h) {}
            text x=(LEFT - 6.0) y=(TOP + 4.0) text-anchor="end" { (max) }
            text x=(LEFT - 6.0) y=(TOP + plot_h) text-anchor="end" { "0" }
            @for i in &ticks {
                // The last label ends at its tick, so it is not cut at the chart's edge.
                text x=(format!("{:.1}", x(*i))) y=(H - 8.0) text-anchor=(if *i + 1 == n && n > 1 { "end" } else { "middle" }) {
                    (label(starts[*i]))
                }
            }
            @for l in lines {
                @if l.values.len() == 1 {
                    circle class=(l.class) cx=(format!("{:.1}", x(0))) cy=(format!("{:.1}", y(l.values[0]))) r="3" {}
                } @else {
                    polyline class=(l.class) points=(points(&l.values)) {}
                }
            }
        }
    }
}

/// A horizontal bar `value / max` of the row's width.
pub fn bar(value: u64, max: u64) -> Markup {
    let width = if max == 0 { 0.0 } else { 100.0 * value as f64 / max as f64 };
    html! {
        svg.bar viewBox="0 0 100 8" preserveAspectRatio="none" aria-hidden="true" {
            rect x="0" y="0" width=(format!("{width:.1}")) height="8" {}
        }
    }
}

/// A rate as the figures show it: `75.0%`, or `–` without one.
pub fn rate(r: Option<f64>) -> Markup {
    match r {
        Some(r) => html! { (format!("{:.1}%", r * 100.0)) },
        None => PreEscaped("–".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_show_one_decimal_or_a_dash() {
        assert_eq!(rate(Some(0.75)).into_string(), "75.0%");
        assert_eq!(rate(Some(2.0 / 3.0)).into_string(), "66.7%");
        assert_eq!(rate(None).into_string(), "–");
    }

    #[test]
    fn a_series_is_an_svg_image_with_one_line_per_metric() {
        let svg = time_series(
            "Sends and verified",
            &[0, 1, 2],
            |ms| ms.to_string(),
            &[Line { class: "sends", values: vec![1, 4, 2] }, Line { class: "verified", values: vec![0, 3, 2] }],
        )
        .into_string();
        assert!(svg.starts_with("<svg class=\"chart\" role=\"img\" aria-label=\"Sends and verified\""));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(!svg.contains("style="));
    }
}

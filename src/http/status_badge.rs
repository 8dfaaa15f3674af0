//! The status badge, `GET /status/{tenant}/badge/{name}.svg`: a small flat SVG in the usual
//! two-part shape (the integration's name, then its state in words on the state's colour),
//! with a `<title>` and `role="img"`, so it reads the same to assistive technology.

use crate::app::status_page::PageState;

fn colour(state: PageState) -> &'static str {
    match state {
        PageState::Operational => "#1a7f37",
        PageState::Degraded => "#9a6700",
        PageState::Outage => "#cf222e",
        PageState::Maintenance => "#0969da",
        PageState::Paused | PageState::Pending => "#59636e",
    }
}

/// Width of `text` in 11 px Verdana-like type: an estimate (no font metrics on the server)
/// that errs wide.
fn width(text: &str) -> usize {
    text.chars().count() * 7 + 12
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The badge of the integration `name` in `state`.
pub fn badge(name: &str, state: PageState) -> String {
    let label = escape(name);
    let value = state.label().to_lowercase();
    let (left, right) = (width(name), width(&value));
    let total = left + right;
    let colour = colour(state);
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{total}" height="20" role="img" aria-label="{label}: {value}"><title>{label}: {value}</title><rect width="{left}" height="20" fill="#555"/><rect x="{left}" width="{right}" height="20" fill="{colour}"/><g fill="#fff" font-family="Verdana,DejaVu Sans,sans-serif" font-size="11" text-anchor="middle"><text x="{lx}" y="14">{label}</text><text x="{rx}" y="14">{value}</text></g></svg>"##,
        lx = left / 2,
        rx = left + right / 2,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_badge_states_the_name_and_state_in_words() {
        let svg = badge("registry <eu>", PageState::Outage);
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(
            svg.contains("<title>registry &lt;eu&gt;: outage</title>"),
            "{svg}"
        );
        assert!(svg.contains("#cf222e"));
        assert!(!svg.contains("<eu>"));
    }
}

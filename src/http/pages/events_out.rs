//! What the board tells its operators about events out: each subscription
//! that cannot deliver (docs/08, "events are not going out"). A disabled
//! webhook endpoint is one: its last error says it was disabled.

use maud::{html, Markup};

use super::layout;
use crate::app::App;

/// A subscription failing with nothing delivered for this long is shown
/// (a moment's hiccup is not).
const STALLED_AFTER_SECS: i64 = 60;

/// One alert per stalled subscription; nothing while none is (or while
/// the database cannot say).
pub(super) async fn notice(app: &App) -> Markup {
    let stalled = crate::subscriptions::status::stalled(&app.pool, STALLED_AFTER_SECS)
        .await
        .unwrap_or_default();
    html! {
        @for s in stalled {
            p.notice.error role="alert" data-subscription=(s.name) {
                "Events out: " strong { (s.name) } " has delivered nothing since "
                (layout::time(Some(s.since))) ". Last error: " (s.error)
            }
        }
    }
}

//! A check-in off site on the pages: the board's row wears an "off-site
//! check-in" badge with where it was and the reason (escaped), the job
//! page's visit shows the verdict, the distance, the accuracy and the
//! reason; a located check-in inside the radius wears no badge.

use serde_json::json;

use crate::support::*;
use crate::{get_page, job_page, login};

#[tokio::test]
async fn the_board_and_the_job_page_show_an_off_site_check_in_and_its_reason() {
    let t = TestApp::spawn().await;
    t.register_technicians().await;
    located_site(&t, 2).await;
    let tech_d = t.keys.tech_d.clone();
    let near = en_route_at(&t, "geo-door-1").await;
    let body = json!({"method": "app", "lat": 41.8463, "lon": SITE_LON});
    t.expect(&near, "check_in", &tech_d, body, Want::State("on_site"))
        .await;
    let far = en_route_at(&t, "geo-door-2").await;
    let reason = "<script>alert(1)</script> dock gate locked";
    let body = json!({"method": "app", "lat": 41.85, "lon": SITE_LON, "accuracy_m": 24.6, "reason": reason});
    t.expect(&far, "check_in", &tech_d, body, Want::State("on_site"))
        .await;
    t.project().await;
    let desk = login(&t, &t.keys.dispatcher).await;

    let board = get_page(&t, "/ui/board", Some(&desk)).await;
    assert_eq!(board.status, 200, "{}", board.body);
    assert_eq!(
        board.body.matches(">off-site check-in<").count(),
        1,
        "one badge, on the far job's row"
    );
    let far_row = &board.body[board.body.find(&format!("data-job-id=\"{far}\"")).unwrap()..];
    let far_row = &far_row[..far_row.find("</tr>").unwrap()];
    assert!(far_row.contains("off-site check-in"), "{far_row}");
    assert!(far_row.contains("off site: 445 m away, outside its 150 m radius"));
    assert!(far_row.contains("&lt;script&gt;alert(1)&lt;/script&gt; dock gate locked"));
    assert!(
        !board.body.contains("<script>alert(1)"),
        "escaped, never markup"
    );
    let near_row = &board.body[board.body.find(&format!("data-job-id=\"{near}\"")).unwrap()..];
    let near_row = &near_row[..near_row.find("</tr>").unwrap()];
    assert!(!near_row.contains("off-site"), "{near_row}");

    let page = job_page(&t, &far, &desk).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("data-verdict=\"outside\""),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("off site: 445 m away, outside its 150 m radius"));
    assert!(page.body.contains("accuracy ±25 m"));
    assert!(page
        .body
        .contains("reason: <span class=\"free-text\">&lt;script&gt;"));
    assert!(page.body.contains(">off-site check-in<"));
    let page = job_page(&t, &near, &desk).await;
    assert!(page.body.contains("data-verdict=\"inside\""));
    assert!(page
        .body
        .contains("at the site: 33 m away, within its 150 m radius"));
    assert!(!page.body.contains("off-site check-in"));
    // The technician's own job page shows their check-in too.
    let own = login(&t, &tech_d).await;
    let page = job_page(&t, &far, &own).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-verdict=\"outside\""));
}

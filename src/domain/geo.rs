//! The geofence of a check-in: how far a technician's reported position is
//! from the site's coordinates, and whether that is within the site's
//! radius. Pure arithmetic on degrees and metres; the site's location is a
//! fact the application resolves from the registry (`check_in`'s
//! `site_location`), the position is what the phone reported.
//!
//! The rule and its reasons are in docs/decisions.md ("Geofenced
//! check-in"): inside is a distance, rounded to whole metres, at most the
//! radius — the reported accuracy is recorded, never used to widen or
//! narrow the fence.

use serde::{Deserialize, Serialize};

/// The radius of a site that records none, in metres: a large building's
/// footprint and its car park, so a technician at the loading dock of the
/// site is inside, and one at the next block's building is not.
pub const DEFAULT_RADIUS_M: u32 = 150;

/// The radii a site may record, in metres: from a storefront (25) to a
/// campus or distribution yard (5000).
pub const RADIUS_RANGE_M: std::ops::RangeInclusive<u32> = 25..=5000;

/// The largest accuracy a check-in may report, in metres (a phone's coarse
/// network fix is a few kilometres; beyond 100 km it is no fix at all).
pub const MAX_ACCURACY_M: f64 = 100_000.0;

/// The mean radius of the Earth (IUGG), metres.
const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// Great-circle distance in metres between two points given as
/// `(latitude, longitude)` in degrees (the haversine formula: exact on a
/// sphere, within 0.5 % of the ellipsoid — a metre or two at a site's scale).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.0.to_radians(), b.0.to_radians());
    let d_lat = lat2 - lat1;
    let d_lon = (b.1 - a.1).to_radians();
    let h = (d_lat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (d_lon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

/// Where a registered site is, as a check-in's geofence sees it (resolved
/// by the application from the registry: the job's door's site, when it has
/// coordinates).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteLocation {
    /// The registry's site id.
    pub site_id: String,
    /// Latitude, degrees.
    pub latitude: f64,
    /// Longitude, degrees.
    pub longitude: f64,
    /// The site's radius, metres ([`DEFAULT_RADIUS_M`] when it records none).
    pub radius_m: u32,
}

/// Where a check-in was made against the site's radius.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Within the radius.
    Inside,
    /// Beyond the radius.
    Outside,
    /// No position given (the phone's location was refused or unavailable).
    NoLocation,
}

impl Verdict {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Inside => "inside",
            Verdict::Outside => "outside",
            Verdict::NoLocation => "no_location",
        }
    }
}

/// A check-in's geofence, as recorded on `CheckedIn` and shown on the visit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Geofence {
    /// Inside, outside or without a location.
    pub verdict: Verdict,
    /// The distance from the site, whole metres (`null` without a location).
    pub distance_m: Option<u32>,
    /// The site's radius at the time, metres.
    pub radius_m: u32,
    /// The registry's site id.
    pub site_id: String,
}

impl Geofence {
    /// Whether the check-in was not shown to be at the site (outside, or
    /// without a location): such a check-in needs a reason and flags the job.
    pub fn off_site(&self) -> bool {
        self.verdict != Verdict::Inside
    }
}

impl SiteLocation {
    /// The geofence of a check-in at `at` (`(latitude, longitude)`, `None`
    /// when no position was given). Inside when the distance, rounded to
    /// whole metres, is at most the radius.
    pub fn judge(&self, at: Option<(f64, f64)>) -> Geofence {
        let distance = at.map(|p| {
            // At most half the Earth's circumference: well within u32.
            distance_m(p, (self.latitude, self.longitude)).round() as u32
        });
        let verdict = match distance {
            None => Verdict::NoLocation,
            Some(d) if d <= self.radius_m => Verdict::Inside,
            Some(_) => Verdict::Outside,
        };
        Geofence {
            verdict,
            distance_m: distance,
            radius_m: self.radius_m,
            site_id: self.site_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances_are_great_circle_metres() {
        assert_eq!(distance_m((41.846, -87.6236), (41.846, -87.6236)), 0.0);
        // One degree of latitude: 111.2 km on the mean sphere.
        let one = distance_m((0.0, 0.0), (1.0, 0.0));
        assert!((one - 111_195.0).abs() < 1.0, "{one}");
        // Antipodes: half the circumference, no NaN from rounding.
        let half = distance_m((0.0, 0.0), (0.0, 180.0));
        assert!((half - std::f64::consts::PI * EARTH_RADIUS_M).abs() < 1.0);
        assert!(distance_m((90.0, 0.0), (-90.0, 0.0)).is_finite());
    }

    #[test]
    fn the_radius_is_inclusive_in_whole_metres() {
        let site = SiteLocation {
            site_id: "s".into(),
            latitude: 0.0,
            longitude: 0.0,
            radius_m: 150,
        };
        // 0.00135° of latitude ≈ 150.1 m: rounds to 150, inside.
        let edge = site.judge(Some((0.00135, 0.0)));
        assert_eq!(
            (edge.verdict, edge.distance_m),
            (Verdict::Inside, Some(150))
        );
        let out = site.judge(Some((0.00136, 0.0)));
        assert_eq!((out.verdict, out.distance_m), (Verdict::Outside, Some(151)));
        let none = site.judge(None);
        assert_eq!((none.verdict, none.distance_m), (Verdict::NoLocation, None));
        assert!(none.off_site() && out.off_site() && !edge.off_site());
    }
}

//! Money: integer cents, never floats.

/// An amount in integer cents (USD unless said otherwise).
pub type Cents = i64;

/// The only currency the service bills in today.
pub const CURRENCY: &str = "USD";

/// Labor in cents for `minutes` at `rate_cents_per_hour`, rounded half up to the cent.
pub fn labor_cents(minutes: i64, rate_cents_per_hour: Cents) -> Cents {
    (minutes * rate_cents_per_hour + 30) / 60
}

/// Minutes rounded up to a whole number of `increment` minutes (increment 0 or 1: unchanged).
pub fn round_up_minutes(minutes: i64, increment: i64) -> i64 {
    if increment <= 1 || minutes <= 0 {
        return minutes.max(0);
    }
    (minutes + increment - 1) / increment * increment
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labor_rounds_to_cent() {
        assert_eq!(labor_cents(60, 12_500), 12_500);
        assert_eq!(labor_cents(90, 12_500), 18_750);
        assert_eq!(labor_cents(1, 100), 2);
    }

    #[test]
    fn minutes_round_up_to_increment() {
        assert_eq!(round_up_minutes(61, 15), 75);
        assert_eq!(round_up_minutes(60, 15), 60);
        assert_eq!(round_up_minutes(0, 15), 0);
        assert_eq!(round_up_minutes(7, 0), 7);
    }
}

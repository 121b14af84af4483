//! Page arithmetic shared by every listing; pages count from 1.

/// Rows to skip to reach page `page` (anything below 1 reads as the first page).
pub fn offset(page: i64, per_page: i64) -> i64 {
    (page.max(1) - 1) * per_page
}

/// The number of the last page: 1 for an empty listing.
pub fn last_page(total: i64, per_page: i64) -> i64 {
    ((total + per_page - 1) / per_page).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_count_from_one() {
        assert_eq!(offset(1, 50), 0);
        assert_eq!(offset(3, 20), 40);
        assert_eq!(offset(0, 20), 0);
        assert_eq!(last_page(0, 50), 1);
        assert_eq!(last_page(50, 50), 1);
        assert_eq!(last_page(51, 50), 2);
    }
}

//! Decimal numbers written into head bytes without allocating (status
//! codes, lengths, ranges).
//!
//! Runs in: child (and the parent, for its `503`). Pure.

/// Appends `n` in decimal.
pub fn push_number(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::push_number;

    #[test]
    fn writes_every_width() {
        for n in [0, 7, 10, 404, 1 << 32, u64::MAX] {
            let mut out = b"x".to_vec();
            push_number(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }
}

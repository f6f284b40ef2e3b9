//! The nearest of a set of embedding vectors to a query, by dot product (the cosine similarity of unit-length
//! vectors, which the on-device embedding model gives).
//!
//! Vectors arrive as the embedding worker sends them: float32 little-endian bytes, the set as one
//! contiguous block of equal-width rows. Reading them in place avoids a copy per lookup: the response
//! cache's semantic lookup scans up to thousands of rows per request.

/// A query or a block of rows that is not a whole number of float32 vectors of the query's width.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    /// The query is empty or not a whole number of float32 values.
    #[error("the query vector has {0} bytes: expected a positive multiple of 4")]
    Query(usize),
    /// The rows do not divide into vectors of the query's width.
    #[error("{rows} bytes of rows are not whole vectors of {width} bytes")]
    Rows { rows: usize, width: usize },
}

/// The index and dot product of the row nearest to `query` (the largest dot product; the first row wins a
/// tie), or `None` when there are no rows. Both are float32 little-endian bytes; `rows` holds whole rows
/// of the query's width.
pub fn nearest(query: &[u8], rows: &[u8]) -> Result<Option<(usize, f32)>, VectorError> {
    if query.is_empty() || !query.len().is_multiple_of(4) {
        return Err(VectorError::Query(query.len()));
    }
    let width = query.len();
    if !rows.len().is_multiple_of(width) {
        return Err(VectorError::Rows {
            rows: rows.len(),
            width,
        });
    }
    let query: Vec<f32> = floats(query).collect();
    let mut best: Option<(usize, f32)> = None;
    for (index, row) in rows.chunks_exact(width).enumerate() {
        let score: f32 = floats(row).zip(&query).map(|(a, b)| a * b).sum();
        if best.is_none_or(|(_, top)| score > top) {
            best = Some((index, score));
        }
    }
    Ok(best)
}

fn floats(bytes: &[u8]) -> impl Iterator<Item = f32> + '_ {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pack(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    #[test]
    fn finds_the_row_with_the_largest_dot_product() {
        let query = pack(&[1.0, 0.0]);
        let rows = pack(&[0.0, 1.0, 0.6, 0.8, -1.0, 0.0]);
        assert_eq!(nearest(&query, &rows), Ok(Some((1, 0.6))));
    }

    #[test]
    fn the_first_row_wins_a_tie_and_no_rows_is_none() {
        let query = pack(&[0.0, 1.0]);
        assert_eq!(
            nearest(&query, &pack(&[0.5, 0.5, 0.5, 0.5])),
            Ok(Some((0, 0.5)))
        );
        assert_eq!(nearest(&query, &[]), Ok(None));
    }

    #[test]
    fn malformed_vectors_are_errors() {
        assert_eq!(nearest(&[], &[]), Err(VectorError::Query(0)));
        assert_eq!(nearest(&[0; 6], &[]), Err(VectorError::Query(6)));
        assert_eq!(
            nearest(&[0; 8], &[0; 12]),
            Err(VectorError::Rows { rows: 12, width: 8 })
        );
    }
}

//! Kafka's default partitioner, so a key lands on the same partition as with a Java client.

/// Kafka's `Utils.murmur2`: MurmurHash2 with Kafka's seed over the key bytes, as a signed int.
pub fn kafka_murmur2(key: &[u8]) -> i32 {
    murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32
}

/// `Utils.toPositive(murmur2(key)) % partitions`, as `BuiltInPartitioner.partitionForKey`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    // toPositive masks the sign bit rather than taking the absolute value.
    (kafka_murmur2(key) as u32 & 0x7fff_ffff) % partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `UtilsTest.testMurmur2` from Apache Kafka.
    #[test]
    fn matches_kafka_murmur2_vectors() {
        let vectors = [
            ("21", -973932308),
            ("foobar", -790332482),
            ("a-little-bit-long-string", -985981536),
            ("a-little-bit-longer-string", -1486304829),
            (
                "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58897971,
            ),
            ("abc", 479470107),
        ];
        for (key, expected) in vectors {
            assert_eq!(kafka_murmur2(key.as_bytes()), expected, "{key}");
        }
    }

    #[test]
    fn negative_hashes_map_like_to_positive() {
        // murmur2("21") is negative: toPositive(-973932308) = 1173551340.
        assert_eq!(partition_for_key(b"21", 1_000_000_000), 173_551_340);
        for partitions in 1..50 {
            assert!(partition_for_key(b"foobar", partitions) < partitions);
        }
    }
}

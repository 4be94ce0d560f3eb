//! Kafka's key hash, for every place a key picks a partition: records by their key (the
//! same partition as a Java producer's), and consumer groups by their name among the
//! replicas that run them.

/// Kafka's `Utils.murmur2`: MurmurHash2 with Kafka's seed over the key bytes, as a signed int.
pub fn kafka_murmur2(key: &[u8]) -> i32 {
    murmur2::murmur2(key, murmur2::KAFKA_SEED) as i32
}

/// `Utils.toPositive(murmur2(key)) % partitions`, as `BuiltInPartitioner.partitionForKey`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    // toPositive masks the sign bit rather than taking the absolute value.
    (kafka_murmur2(key) as u32 & 0x7fff_ffff) % partitions
}

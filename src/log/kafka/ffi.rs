//! The librdkafka calls rust-rdkafka does not wrap, on librdkafka's C API (`rdkafka-sys`):
//! a group's offsets by group name from one client (ListConsumerGroupOffsets,
//! AlterConsumerGroupOffsets; fede1024/rust-rdkafka#785), incremental config changes
//! (IncrementalAlterConfigs: the legacy AlterConfigs resets what it does not name), and a
//! transaction commit without rust-rdkafka's flush loop (which polls every 100 ms), and
//! the cluster's controller (DescribeCluster).
//!
//! Every call here blocks its thread until librdkafka answers or the timeout passes: run
//! them on a blocking thread.

use std::ffi::{CStr, CString, c_char, c_int};
use std::ptr;
use std::time::Duration;

use rdkafka::TopicPartitionList;
use rdkafka::bindings as rd;
use rdkafka::types::RDKafkaErrorCode;

/// A librdkafka failure: its code (for deciding what it means) and its text.
#[derive(Debug, Clone)]
pub(super) struct NativeError {
    pub code: RDKafkaErrorCode,
    pub message: String,
    /// For transaction calls: the producer must be recreated.
    pub fatal: bool,
}

impl std::fmt::Display for NativeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.message, self.code)
    }
}

impl NativeError {
    fn from_code(code: rd::rd_kafka_resp_err_t, context: &str) -> NativeError {
        let text = unsafe { text(rd::rd_kafka_err2str(code)) };
        NativeError {
            code: code.into(),
            message: format!("{context}: {text}"),
            fatal: false,
        }
    }

    /// Takes an `rd_kafka_error_t` (destroying it); `None` for a null pointer (success).
    unsafe fn take(error: *mut rd::rd_kafka_error_t) -> Option<NativeError> {
        if error.is_null() {
            return None;
        }
        let taken = unsafe {
            NativeError {
                code: rd::rd_kafka_error_code(error).into(),
                message: text(rd::rd_kafka_error_string(error)),
                fatal: rd::rd_kafka_error_is_fatal(error) != 0,
            }
        };
        unsafe { rd::rd_kafka_error_destroy(error) };
        Some(taken)
    }

    /// Reads an `rd_kafka_error_t` owned by someone else (a result).
    unsafe fn read(error: *const rd::rd_kafka_error_t) -> Option<NativeError> {
        if error.is_null() {
            return None;
        }
        Some(unsafe {
            NativeError {
                code: rd::rd_kafka_error_code(error).into(),
                message: text(rd::rd_kafka_error_string(error)),
                fatal: false,
            }
        })
    }

    fn local(message: impl Into<String>) -> NativeError {
        NativeError {
            code: RDKafkaErrorCode::InvalidArgument,
            message: message.into(),
            fatal: false,
        }
    }
}

unsafe fn text(ptr: *const c_char) -> String {
    if ptr.is_null() {
        return String::new();
    }
    unsafe { CStr::from_ptr(ptr) }
        .to_string_lossy()
        .into_owned()
}

fn millis(timeout: Duration) -> c_int {
    c_int::try_from(timeout.as_millis()).unwrap_or(c_int::MAX)
}

fn c_string(text: &str) -> Result<CString, NativeError> {
    CString::new(text).map_err(|_| NativeError::local("a name holds a NUL byte"))
}

/// Commits the open transaction of a transactional producer. Its messages must all be
/// delivered already (then this costs one round trip, not rust-rdkafka's 100 ms poll).
pub(super) fn commit_transaction(
    rk: *mut rd::rd_kafka_t,
    timeout: Duration,
) -> Result<(), NativeError> {
    match unsafe { NativeError::take(rd::rd_kafka_commit_transaction(rk, millis(timeout))) } {
        None => Ok(()),
        Some(err) => Err(err),
    }
}

/// The log start a consumer's last fetch of a partition reported (no round trip).
pub(super) fn cached_log_start(
    rk: *mut rd::rd_kafka_t,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = c_string(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    let err = unsafe {
        rd::rd_kafka_get_watermark_offsets(rk, topic.as_ptr(), partition, &mut low, &mut high)
    };
    (err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && low >= 0).then_some(low)
}

/// A temporary event queue and admin options for one admin call, destroyed on drop.
struct AdminCall {
    queue: *mut rd::rd_kafka_queue_t,
    options: *mut rd::rd_kafka_AdminOptions_t,
    timeout: Duration,
}

impl AdminCall {
    fn new(
        rk: *mut rd::rd_kafka_t,
        op: rd::rd_kafka_admin_op_t,
        timeout: Duration,
    ) -> Result<AdminCall, NativeError> {
        let queue = unsafe { rd::rd_kafka_queue_new(rk) };
        let options = unsafe { rd::rd_kafka_AdminOptions_new(rk, op) };
        let call = AdminCall {
            queue,
            options,
            timeout,
        };
        if queue.is_null() || options.is_null() {
            return Err(NativeError::local(
                "librdkafka could not start an admin call",
            ));
        }
        let mut errstr = [0 as c_char; 256];
        let err = unsafe {
            rd::rd_kafka_AdminOptions_set_request_timeout(
                options,
                millis(timeout),
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(NativeError::from_code(err, "admin options"));
        }
        Ok(call)
    }

    /// Waits for the call's result event, checking the call's own error.
    fn result(&self, what: &str) -> Result<Event, NativeError> {
        // A little past the request timeout, so librdkafka reports the time-out itself.
        let wait = millis(self.timeout + Duration::from_millis(500));
        let event = unsafe { rd::rd_kafka_queue_poll(self.queue, wait) };
        if event.is_null() {
            return Err(NativeError {
                code: RDKafkaErrorCode::RequestTimedOut,
                message: format!("{what}: no answer from the cluster in time"),
                fatal: false,
            });
        }
        let event = Event(event);
        let err = unsafe { rd::rd_kafka_event_error(event.0) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let detail = unsafe { text(rd::rd_kafka_event_error_string(event.0)) };
            let mut error = NativeError::from_code(err, what);
            if !detail.is_empty() {
                error.message = format!("{what}: {detail}");
            }
            return Err(error);
        }
        Ok(event)
    }
}

impl Drop for AdminCall {
    fn drop(&mut self) {
        unsafe {
            if !self.options.is_null() {
                rd::rd_kafka_AdminOptions_destroy(self.options);
            }
            if !self.queue.is_null() {
                rd::rd_kafka_queue_destroy(self.queue);
            }
        }
    }
}

struct Event(*mut rd::rd_kafka_event_t);

impl Drop for Event {
    fn drop(&mut self) {
        unsafe { rd::rd_kafka_event_destroy(self.0) };
    }
}

/// One partition of a result list: (topic, partition, offset, error).
pub(super) type PartitionResult = (String, i32, i64, rd::rd_kafka_resp_err_t);

/// Copies a result's partition list out.
unsafe fn partitions(list: *const rd::rd_kafka_topic_partition_list_t) -> Vec<PartitionResult> {
    if list.is_null() {
        return Vec::new();
    }
    let list = unsafe { &*list };
    (0..usize::try_from(list.cnt).unwrap_or(0))
        .map(|i| {
            let elem = unsafe { &*list.elems.add(i) };
            (
                unsafe { text(elem.topic) },
                elem.partition,
                elem.offset,
                elem.err,
            )
        })
        .collect()
}

/// The one group result of a group offsets call.
unsafe fn group_partitions(
    groups: *mut *const rd::rd_kafka_group_result_t,
    count: usize,
    what: &str,
) -> Result<Vec<PartitionResult>, NativeError> {
    if groups.is_null() || count == 0 {
        return Err(NativeError::local(format!(
            "{what}: no group in the answer"
        )));
    }
    let group = unsafe { *groups };
    if let Some(err) = unsafe { NativeError::read(rd::rd_kafka_group_result_error(group)) } {
        return Err(err);
    }
    Ok(unsafe { partitions(rd::rd_kafka_group_result_partitions(group)) })
}

/// Every committed offset of a consumer group, whoever committed it.
pub(super) fn list_group_offsets(
    rk: *mut rd::rd_kafka_t,
    group: &str,
    timeout: Duration,
) -> Result<Vec<PartitionResult>, NativeError> {
    let call = AdminCall::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS,
        timeout,
    )?;
    let name = c_string(group)?;
    let mut request =
        unsafe { rd::rd_kafka_ListConsumerGroupOffsets_new(name.as_ptr(), ptr::null()) };
    unsafe {
        rd::rd_kafka_ListConsumerGroupOffsets(rk, &mut request, 1, call.options, call.queue);
        rd::rd_kafka_ListConsumerGroupOffsets_destroy(request);
    }
    let event = call.result("listing a group's offsets")?;
    let result = unsafe { rd::rd_kafka_event_ListConsumerGroupOffsets_result(event.0) };
    if result.is_null() {
        return Err(NativeError::local(
            "listing a group's offsets: unexpected answer",
        ));
    }
    let mut count = 0;
    let groups = unsafe { rd::rd_kafka_ListConsumerGroupOffsets_result_groups(result, &mut count) };
    unsafe { group_partitions(groups, count, "listing a group's offsets") }
}

/// Sets committed offsets of a consumer group; the broker refuses (`UNKNOWN_MEMBER_ID`)
/// while native consumers are members of it.
pub(super) fn alter_group_offsets(
    rk: *mut rd::rd_kafka_t,
    group: &str,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> Result<Vec<PartitionResult>, NativeError> {
    let call = AdminCall::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONSUMERGROUPOFFSETS,
        timeout,
    )?;
    let name = c_string(group)?;
    let mut request =
        unsafe { rd::rd_kafka_AlterConsumerGroupOffsets_new(name.as_ptr(), offsets.ptr()) };
    unsafe {
        rd::rd_kafka_AlterConsumerGroupOffsets(rk, &mut request, 1, call.options, call.queue);
        rd::rd_kafka_AlterConsumerGroupOffsets_destroy(request);
    }
    let event = call.result("committing a group's offsets")?;
    let result = unsafe { rd::rd_kafka_event_AlterConsumerGroupOffsets_result(event.0) };
    if result.is_null() {
        return Err(NativeError::local(
            "committing a group's offsets: unexpected answer",
        ));
    }
    let mut count = 0;
    let groups =
        unsafe { rd::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count) };
    unsafe { group_partitions(groups, count, "committing a group's offsets") }
}

/// The id of the cluster's active controller (DescribeCluster), `None` if it names none.
pub(super) fn describe_cluster_controller(
    rk: *mut rd::rd_kafka_t,
    timeout: Duration,
) -> Result<Option<i32>, NativeError> {
    let call = AdminCall::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECLUSTER,
        timeout,
    )?;
    unsafe { rd::rd_kafka_DescribeCluster(rk, call.options, call.queue) };
    let event = call.result("describing the cluster")?;
    let result = unsafe { rd::rd_kafka_event_DescribeCluster_result(event.0) };
    if result.is_null() {
        return Err(NativeError::local(
            "describing the cluster: unexpected answer",
        ));
    }
    let controller = unsafe { rd::rd_kafka_DescribeCluster_result_controller(result) };
    Ok((!controller.is_null()).then(|| unsafe { rd::rd_kafka_Node_id(controller) }))
}

/// Sets some configs of a topic, leaving the others as they are.
pub(super) fn set_topic_configs(
    rk: *mut rd::rd_kafka_t,
    topic: &str,
    configs: &[(&str, String)],
    timeout: Duration,
) -> Result<(), NativeError> {
    let call = AdminCall::new(
        rk,
        rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS,
        timeout,
    )?;
    let name = c_string(topic)?;
    let mut resource = unsafe {
        rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        )
    };
    if resource.is_null() {
        return Err(NativeError::local(
            "librdkafka could not describe the topic",
        ));
    }
    for (key, value) in configs {
        let (key, value) = (c_string(key)?, c_string(value)?);
        let added = unsafe {
            NativeError::take(rd::rd_kafka_ConfigResource_add_incremental_config(
                resource,
                key.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                value.as_ptr(),
            ))
        };
        if let Some(err) = added {
            unsafe { rd::rd_kafka_ConfigResource_destroy(resource) };
            return Err(err);
        }
    }
    unsafe {
        rd::rd_kafka_IncrementalAlterConfigs(rk, &mut resource, 1, call.options, call.queue);
        rd::rd_kafka_ConfigResource_destroy(resource);
    }
    let event = call.result("changing a topic's configuration")?;
    let result = unsafe { rd::rd_kafka_event_IncrementalAlterConfigs_result(event.0) };
    if result.is_null() {
        return Err(NativeError::local(
            "changing a topic's configuration: unexpected answer",
        ));
    }
    let mut count = 0;
    let resources =
        unsafe { rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count) };
    for i in 0..count {
        let resource = unsafe { *resources.add(i) };
        let err = unsafe { rd::rd_kafka_ConfigResource_error(resource) };
        if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let mut error = NativeError::from_code(err, "changing a topic's configuration");
            let detail = unsafe { text(rd::rd_kafka_ConfigResource_error_string(resource)) };
            if !detail.is_empty() {
                error.message = detail;
            }
            return Err(error);
        }
    }
    Ok(())
}

//! The columns of `invocations.csv`, by name: the vHive loader's ten first (same names and units), then ours.
//! The loader writes [`Column::ALL`] in order; readers find columns by name with [`HeaderIndex`], so a vHive CSV
//! (which lacks our columns and has others) or an older run folder still reads.

/// One column of `invocations.csv` (times in µs, memory in MiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Column {
    /// 1 warm-up, 2 measured.
    Phase,
    /// The function's stable name.
    Instance,
    /// `min<minute>.inv<index>`.
    InvocationId,
    /// When the request was actually sent, Unix µs.
    StartTime,
    /// The execution time asked for, µs.
    RequestedDuration,
    /// From the intended send time to the last byte of the response, µs.
    ResponseTime,
    /// The execution time the function reported, µs.
    ActualDuration,
    /// Could not connect, or the connection broke (`true`/`false`).
    ConnectionTimeout,
    /// Timed out (`true`/`false`).
    FunctionTimeout,
    /// Memory the function reported, MiB.
    ActualMemoryUsage,
    /// When the request was due, Unix µs.
    IntendedTime,
    /// Actual minus intended send time, µs.
    SendLag,
    /// Whether it met a cold start, where the platform says (`true`/`false`/empty).
    ColdStart,
    /// Response time minus execution time, µs.
    SchedulingLatency,
    /// `ok`, `connection`, `timeout` or `http-<status>`.
    Outcome,
    /// The platform's queueing time, µs.
    QueueTime,
    /// The platform's sandbox creation time, µs.
    CreateTime,
    /// The platform's proxying time, µs.
    ProxyTime,
    /// The platform's own cold-start label.
    PlatformColdStart,
}

impl Column {
    /// Every column, in the order the loader writes them.
    pub const ALL: [Column; 19] = [
        Column::Phase,
        Column::Instance,
        Column::InvocationId,
        Column::StartTime,
        Column::RequestedDuration,
        Column::ResponseTime,
        Column::ActualDuration,
        Column::ConnectionTimeout,
        Column::FunctionTimeout,
        Column::ActualMemoryUsage,
        Column::IntendedTime,
        Column::SendLag,
        Column::ColdStart,
        Column::SchedulingLatency,
        Column::Outcome,
        Column::QueueTime,
        Column::CreateTime,
        Column::ProxyTime,
        Column::PlatformColdStart,
    ];

    /// The header name.
    pub const fn name(self) -> &'static str {
        match self {
            Column::Phase => "phase",
            Column::Instance => "instance",
            Column::InvocationId => "invocationID",
            Column::StartTime => "startTime",
            Column::RequestedDuration => "requestedDuration",
            Column::ResponseTime => "responseTime",
            Column::ActualDuration => "actualDuration",
            Column::ConnectionTimeout => "connectionTimeout",
            Column::FunctionTimeout => "functionTimeout",
            Column::ActualMemoryUsage => "actualMemoryUsage",
            Column::IntendedTime => "intendedTime",
            Column::SendLag => "sendLag",
            Column::ColdStart => "coldStart",
            Column::SchedulingLatency => "schedulingLatency",
            Column::Outcome => "outcome",
            Column::QueueTime => "queueTime",
            Column::CreateTime => "createTime",
            Column::ProxyTime => "proxyTime",
            Column::PlatformColdStart => "platformColdStart",
        }
    }

    /// Whether the vHive loader writes this column too (its first ten, same names and units).
    pub const fn is_vhive(self) -> bool {
        (self as usize) <= Column::ActualMemoryUsage as usize
    }
}

/// The header of `invocations.csv` as the loader writes it.
pub const INVOCATIONS_HEADER: [&str; 19] = {
    let mut names = [""; 19];
    let mut index = 0;
    while index < Column::ALL.len() {
        names[index] = Column::ALL[index].name();
        index += 1;
    }
    names
};

/// Where each known column stands in one CSV's header; columns the header lacks are `None`, columns it has
/// beyond ours are ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderIndex {
    positions: [Option<usize>; 19],
}

impl HeaderIndex {
    /// Indexes the header cells (the first occurrence of a name counts).
    pub fn new<I, C>(header: I) -> Self
    where
        I: IntoIterator<Item = C>,
        C: AsRef<[u8]>,
    {
        let mut positions = [None; 19];
        for (position, cell) in header.into_iter().enumerate() {
            let found = Column::ALL.iter().position(|column| column.name().as_bytes() == cell.as_ref());
            if let Some(slot) = found.map(|index| &mut positions[index]) {
                slot.get_or_insert(position);
            }
        }
        Self { positions }
    }

    /// The position of `column`, if the header has it.
    pub fn get(&self, column: Column) -> Option<usize> {
        self.positions[column as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_is_vhives_then_ours() {
        assert_eq!(
            INVOCATIONS_HEADER.join(","),
            "phase,instance,invocationID,startTime,requestedDuration,responseTime,actualDuration,connectionTimeout,\
             functionTimeout,actualMemoryUsage,intendedTime,sendLag,coldStart,schedulingLatency,outcome,queueTime,\
             createTime,proxyTime,platformColdStart"
        );
        let vhive: Vec<_> = Column::ALL.iter().filter(|column| column.is_vhive()).map(|c| c.name()).collect();
        assert_eq!(vhive, INVOCATIONS_HEADER[..10]);
        for (index, column) in Column::ALL.iter().enumerate() {
            assert_eq!(*column as usize, index, "{column:?}: ALL is in declaration order");
        }
    }

    #[test]
    fn a_vhive_header_lacks_our_columns_and_keeps_its_own_order() {
        let header = "phase,instance,invocationID,startTime,requestedDuration,responseTime,actualDuration,\
                      actualMemoryUsage,memoryAllocationTimeout,connectionTimeout,functionTimeout";
        let index = HeaderIndex::new(header.split(','));
        assert_eq!(index.get(Column::Instance), Some(1));
        assert_eq!(index.get(Column::ActualMemoryUsage), Some(7));
        assert_eq!(index.get(Column::FunctionTimeout), Some(10));
        assert_eq!((index.get(Column::IntendedTime), index.get(Column::ColdStart)), (None, None));
        assert_eq!(HeaderIndex::new(INVOCATIONS_HEADER).get(Column::PlatformColdStart), Some(18));
    }

    #[test]
    fn the_first_of_a_repeated_name_counts() {
        let index = HeaderIndex::new(["x", "instance", "instance"]);
        assert_eq!((index.get(Column::Instance), index.get(Column::Phase)), (Some(1), None));
    }
}

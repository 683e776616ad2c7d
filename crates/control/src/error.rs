//! Why a control-plane call failed, and the one place each reason becomes a gRPC [`Status`] (for
//! callers) or a [`ForwardReply::Failed`](crate::node) (for a member that forwarded the call to the
//! leader, which turns it back into the same error).

use tonic::{Code, Status};

/// A failed control-plane call.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// No member leads right now (an election is under way).
    #[error("the control plane has no leader now; retry")]
    NoLeader,
    /// This member has a leader id but no address for it yet.
    #[error("the leader's address is unknown; retry")]
    LeaderUnknown,
    /// A forwarded call reached a member that no longer leads, or leadership changed mid-write.
    #[error("leadership changed; retry ({0})")]
    LeadershipChanged(String),
    /// The request is malformed (a name, a missing field).
    #[error("{0}")]
    Invalid(String),
    /// The request is well formed but cannot be done in this state (a write the state machine
    /// rejects, a membership change Raft refuses, no presence store).
    #[error("{0}")]
    Refused(String),
    /// A store or member this call needs cannot be reached.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an impossible answer (an encoding failure, an unexpected reply).
    #[error("{0}")]
    Internal(String),
    /// The leader's (or the transport's) own status, passed on as it is.
    #[error("{}", .0.message())]
    Remote(Status),
}

impl ControlError {
    /// The gRPC code of this error; the only mapping from reasons to codes.
    pub fn code(&self) -> Code {
        match self {
            Self::NoLeader | Self::LeaderUnknown | Self::LeadershipChanged(_) | Self::Unavailable(_) => Code::Unavailable,
            Self::Invalid(_) => Code::InvalidArgument,
            Self::Refused(_) => Code::FailedPrecondition,
            Self::Internal(_) => Code::Internal,
            Self::Remote(s) => s.code(),
        }
    }

    /// An unexpected reply shape from the leader.
    pub(crate) fn unexpected() -> Self {
        Self::Internal("unexpected reply from the leader".into())
    }
}

impl From<ControlError> for Status {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Remote(s) => s,
            e => Status::new(e.code(), e.to_string()),
        }
    }
}

impl From<Status> for ControlError {
    fn from(s: Status) -> Self {
        Self::Remote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_maps_to_one_code_and_a_remote_status_passes_through() {
        assert_eq!(Status::from(ControlError::NoLeader).code(), Code::Unavailable);
        assert_eq!(Status::from(ControlError::Invalid("node is required".into())).message(), "node is required");
        assert_eq!(Status::from(ControlError::Refused("no".into())).code(), Code::FailedPrecondition);
        let remote = Status::permission_denied("nope");
        let back = Status::from(ControlError::from(remote));
        assert_eq!((back.code(), back.message()), (Code::PermissionDenied, "nope"));
    }
}

"""flowmusic_async: an asyncio-native client for useapi.net's Flow Music API (Lyria 3 Pro).

Start with `FlowMusic`; `flowmusic_async.testing` holds the simulator to test against.
"""

from ._batch import BatchRun, Outcome
from ._client import DEFAULT_BASE_URL, FlowMusic
from ._errors import (
    AccountBusyError,
    AccountError,
    AllAccountsBusyError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    BatchAborted,
    ClientClosedError,
    ConfigurationError,
    DecodeError,
    FlowMusicError,
    InsufficientCreditsError,
    JobFailed,
    JobTimeout,
    ModeratedError,
    NoAccountAvailable,
    NotFoundError,
    NotReadyError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    SubmissionUncertain,
    TransportError,
    ValidationError,
)
from ._events import Event
from ._handles import JobHandle, SubmitAttempt
from ._journal import Journal, JournalError
from ._models import (
    Account,
    AccountJobs,
    Asset,
    Clip,
    ClipPage,
    ConversationUsage,
    Job,
    JobError,
    LibraryClip,
    Lyrics,
    RunningJob,
    Stems,
    Usage,
    UsageEvent,
    UsageSummary,
)
from ._resources import DownloadStream
from ._scheduler import SlotUsage
from ._timing import Timing
from ._webhooks import WebhookResult

__version__ = "0.1.0"

__all__ = [
    "APIStatusError",
    "Account",
    "AccountBusyError",
    "AccountError",
    "AccountJobs",
    "AllAccountsBusyError",
    "Asset",
    "AuthenticationError",
    "BadRequestError",
    "BatchAborted",
    "BatchRun",
    "ClientClosedError",
    "Clip",
    "ClipPage",
    "ConfigurationError",
    "ConversationUsage",
    "DEFAULT_BASE_URL",
    "DecodeError",
    "DownloadStream",
    "Event",
    "FlowMusic",
    "FlowMusicError",
    "InsufficientCreditsError",
    "Job",
    "JobError",
    "JobFailed",
    "JobHandle",
    "JobTimeout",
    "Journal",
    "JournalError",
    "LibraryClip",
    "Lyrics",
    "ModeratedError",
    "NoAccountAvailable",
    "NotFoundError",
    "NotReadyError",
    "Outcome",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RunningJob",
    "ServerError",
    "SlotUsage",
    "Stems",
    "SubmissionUncertain",
    "SubmitAttempt",
    "Timing",
    "TransportError",
    "Usage",
    "UsageEvent",
    "UsageSummary",
    "ValidationError",
    "WebhookResult",
    "__version__",
]

"""Python client for metaserve, the meta-learning service (REST API v1).

    from metaserve import Client
    ms = Client("http://localhost:8080")            # key: api_key= or METASERVE_API_KEY
    job = ms.create_job({...})                       # a Job handle
    job.wait()                                       # until succeeded (raises JobFailed otherwise)
    for ev in job.follow(): ...                      # or its live events (a progress bar on a tty)
    a = ms.adapt("sine", support_x, support_y, steps=10)
    y = ms.predict_adapted(a["id"], x)

Errors are ProblemError exceptions carrying the server's problem document.
"""
from .client import Client, Event, Job, JobFailed, ProblemError, MetaserveError

__all__ = ["Client", "Event", "Job", "JobFailed", "ProblemError", "MetaserveError"]
__version__ = "0.1.0"

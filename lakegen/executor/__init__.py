"""Where jobs run: the :class:`~lakegen.executor.local.Executor` interface and its local pool of worker
subprocesses (:mod:`.local`), confined by the sandbox (:mod:`.sandbox`) when the code is contributed.
"""

"""The one exception type for mistakes a user can fix (bad config, missing data).

Entry points print its message as one line and exit non-zero, instead of a traceback.
"""


class UserError(Exception):
  """Raised for bad input; its message says what is wrong and how to fix it."""

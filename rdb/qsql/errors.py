"""The q-style error of the q-sql subset: the message is what q would print after the quote."""


class QError(Exception):
    """`'type`, `'length`, `'nyi`, `'<name>` ...: str(error) is the text without the quote."""


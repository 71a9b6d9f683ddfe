"""Frontend errors carry the file, line and column."""


class FrontendError(Exception):
    def __init__(self, message: str, source: str = "", line: int | None = None, column: int | None = None,
                 context: str = "", hint: str = ""):
        self.source, self.line, self.column, self.hint = source, line, column, hint
        where = source
        if line is not None:
            where += f":{line}:{column}"
        text = f"{where}: {message}" if where else message
        if hint:
            text += f" (hint: {hint})"
        if context:
            text += "\n" + context
        super().__init__(text)

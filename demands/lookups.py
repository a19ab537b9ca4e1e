"""Lookups the ORM lacks.

`search_contains`: a case-insensitive substring match that PostgreSQL's pg_trgm GIN index can
serve. Django's `icontains` writes `UPPER(content::text) LIKE UPPER('%…%')` on PostgreSQL, which
no index on `content` serves, so a search for a rare word read every row (49 ms at 100,000 rows,
ten times that at a million). This writes `content ILIKE '%…%'`, with `%`, `_` and `\\` in the
search taken literally as icontains takes them. A search shorter than three characters has no
trigram to look up, so it stays `icontains`, as it does elsewhere (SQLite).

A search without upper or lower case (Chinese, digits: "支付", "5xx" is not one) matches the same
rows case-sensitively, so it is a plain `LIKE`, which the trigram index serves as well and which
reads rows one by one five times faster than `UPPER() … LIKE` (a 2-character Chinese search over
1,000,000 live demands: 21 → 4.4 ms for the count's walk, bench/archive_scale.py).
"""

from django.db.models import lookups


def caseless(value) -> bool:
    """Whether `value` has no letter with case: upper- and lower-casing change nothing."""
    return isinstance(value, str) and value.upper() == value.lower()


class SearchContains(lookups.IContains):
    lookup_name = "search_contains"

    def _caseless_rhs(self) -> bool:
        return self.rhs_is_direct_value() and caseless(self.rhs)

    def as_sql(self, compiler, connection):
        if self._caseless_rhs():
            return lookups.Contains(self.lhs, self.rhs).as_sql(compiler, connection)
        return lookups.IContains(self.lhs, self.rhs).as_sql(compiler, connection)

    def as_postgresql(self, compiler, connection):
        if self._caseless_rhs():
            return lookups.Contains(self.lhs, self.rhs).as_sql(compiler, connection)  # LIKE: trigram-served from 3 characters
        if self.rhs_is_direct_value() and isinstance(self.rhs, str) and len(self.rhs) < 3:
            # No trigram in fewer than three characters: no index can help, rows are read one by
            # one, and UPPER() … LIKE reads them ~20 % faster than ILIKE.
            return lookups.IContains(self.lhs, self.rhs).as_sql(compiler, connection)
        # lookup_cast() adds no UPPER() or ::text for a lookup name it does not know.
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)  # '%' + escaped value + '%'
        return f"{lhs} ILIKE {rhs}", [*lhs_params, *rhs_params]

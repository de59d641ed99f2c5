"""The fleet model the pyinfra roles share: who holds which role, at which private address,
the URLs the app gets, the secrets, the wheelhouse, and the rendering of every template.

Everything here is plain Python with no pyinfra state, so unit tests build a fleet from a dict
and render every file the roles would write (tests/deploy/unit).
"""

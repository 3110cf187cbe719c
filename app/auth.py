"""Who is using the app, and may they do this?

1. Streamlit's built-in OIDC login (``st.login``) when ``[auth]`` is configured in secrets.toml;
   the role comes from the users file (by e-mail), default "reviewer".
2. Otherwise configured credentials: a TOML users file with PBKDF2-SHA256 password hashes
   (``python -m app.auth NAME ROLE`` prints an entry).
3. With neither, and only when the server is bound to localhost, an anonymous single-user
   mode (role admin), announced in the UI.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import streamlit as st

ROLES = ("reviewer", "admin")
LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1")
ITERATIONS = 240_000


@dataclass(frozen=True)
class User:
    name: str
    role: str
    mode: str  # "oidc" | "password" | "local"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def hash_password(password: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), ITERATIONS).hex()
    return f"pbkdf2_sha256${ITERATIONS}${salt}${digest}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, digest = stored.split("$")
    except ValueError:
        return False
    if algo != "pbkdf2_sha256":
        return False
    test = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations)).hex()
    return hmac.compare_digest(test, digest)


def load_users(path: Path | None) -> dict:
    if path is None or not Path(path).is_file():
        return {}
    return tomllib.loads(Path(path).read_text()).get("users", {})


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets file at all
        return False


def bound_to_localhost() -> bool:
    return (st.get_option("server.address") or "") in LOCAL_ADDRESSES


def current_user(users_file: Path | None) -> User | None:
    """The signed-in user, or None after drawing the sign-in form (the caller then stops)."""
    users = load_users(users_file)
    if _oidc_configured():
        if not st.user.is_logged_in:
            st.title("PatchCoreCL")
            st.button("Sign in", on_click=st.login, type="primary")
            return None
        email = st.user.get("email") or st.user.get("name") or "oidc-user"
        role = users.get(email, {}).get("role", "reviewer")
        return User(email, role if role in ROLES else "reviewer", "oidc")
    if users:
        if "user" in st.session_state:
            return st.session_state["user"]
        st.title("PatchCoreCL — sign in")
        with st.form("login"):
            name = st.text_input("User name")
            password = st.text_input("Password", type="password")
            ok = st.form_submit_button("Sign in", type="primary")
        if ok:
            entry = users.get(name)
            if entry and verify_password(password, entry.get("password_hash", "")):
                role = entry.get("role", "reviewer")
                st.session_state["user"] = User(name, role if role in ROLES else "reviewer", "password")
                st.rerun()
            st.error("Unknown user name or wrong password.")
        return None
    if bound_to_localhost():
        return User(os.environ.get("USER", "local"), "admin", "local")
    st.title("PatchCoreCL")
    st.error("No sign-in is configured and the server is reachable from the network. Configure OIDC "
             "([auth] in .streamlit/secrets.toml) or a users file (PATCHCORECL_USERS), or start the app with "
             "--server.address=localhost for single-user mode.")
    return None


def sign_out() -> None:
    if _oidc_configured():
        st.logout()
    st.session_state.pop("user", None)


if __name__ == "__main__":  # python -m app.auth NAME ROLE  → a users-file entry (reads the password from stdin)
    name, role = sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "reviewer"
    pw = sys.stdin.readline().rstrip("\n")
    print(f'[users."{name}"]\nrole = "{role}"\npassword_hash = "{hash_password(pw)}"')

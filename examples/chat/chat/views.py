"""Ordinary Django views: pages, sign-up, and the long-poll *send* endpoint.

They run on the server's WSGI thread pool like under any WSGI server; only
the realtime parts (WebSocket, the parked long-poll GET) are consumers.
"""

from __future__ import annotations

import json
import re

from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import UserCreationForm
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from .consumers import submit
from .models import ROOM_PATTERN

_ROOM = re.compile(ROOM_PATTERN)


def _check_room(room: str) -> str:
    if not _ROOM.fullmatch(room):
        raise Http404("room names are 1-40 letters, digits, '-' or '_'")
    return room


@login_required
def index(request: HttpRequest) -> HttpResponse:
    """Pick a room; any name works, the room exists once someone talks in it."""
    room = request.GET.get("room", "").strip()
    if room:
        return redirect("room", room=_check_room(room))
    return render(request, "chat/index.html")


@login_required
def room(request: HttpRequest, room: str) -> HttpResponse:
    """The chat page; its script talks WebSocket, or long-poll as a fallback."""
    return render(request, "chat/room.html", {"room": _check_room(room)})


@login_required
@require_POST
def send(request: HttpRequest, room: str) -> JsonResponse:
    """Post a line without a WebSocket (the long-poll fallback's half that
    sends); it joins the same moderation channel as WebSocket frames."""
    _check_room(room)
    try:
        text = json.loads(request.body or b"{}").get("text")
    except (ValueError, AttributeError):
        return JsonResponse({"error": 'send {"text": "..."}'}, status=400)
    if not submit(room, request.user.get_username(), text):
        return JsonResponse({"error": "empty message"}, status=400)
    return JsonResponse({"queued": True}, status=202)


def signup(request: HttpRequest) -> HttpResponse:
    """Open sign-up, so a second browser window can be a second user."""
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        return redirect("index")
    return render(request, "registration/signup.html", {"form": form})

"""URLs: sign-in/up, the room list, a room page, and the long-poll send view.

The long-poll *receive* endpoint (``/chat/<room>/poll/``) is not here: it is
an ``http.request`` route in chat/routing.py, so the server hands it to a
consumer instead of a view and can park it without holding a thread.
"""

from chat import views
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

urlpatterns = [
    path("", views.index, name="index"),
    path("chat/<slug:room>/", views.room, name="room"),
    path("chat/<slug:room>/send/", views.send, name="send"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/signup/", views.signup, name="signup"),
    path("admin/", admin.site.urls),
]

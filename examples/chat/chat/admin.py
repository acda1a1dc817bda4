"""The admin: where rooms are created and renamed (the room list updates live)."""

from django.contrib import admin

from .models import Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ("name", "title")
    fields = ("name", "title")

    def get_readonly_fields(self, request, obj=None):
        # The name is the primary key (and part of group names): changing it in
        # the form would save a second room, so it is fixed once created.
        return ("name",) if obj is not None else ()

"""The chat consumer, written as the Channels 4 tutorial writes it."""

import os

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.room = self.scope["url_route"]["kwargs"]["room"]
        await self.channel_layer.group_add(self.room, self.channel_name)
        await self.accept()
        await self.send_json({"joined": self.room, "pid": os.getpid()})

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.room, self.channel_name)

    async def receive_json(self, content):
        await self.channel_layer.group_send(
            self.room, {"type": "chat.message", "text": content["text"], "pid": os.getpid()}
        )

    async def chat_message(self, event):
        await self.send_json({"text": event["text"], "from_pid": event["pid"]})

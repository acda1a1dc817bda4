"""A short demo of the default (in-memory) channel layer: a group chat in one process."""

from chanlite.layers import get_channel_layer


def main() -> None:
    layer = get_channel_layer()
    alice, bob = layer.new_channel("demo.reply!"), layer.new_channel("demo.reply!")
    for member in (alice, bob):
        layer.group_add("room-lobby", member)
    layer.send_group("room-lobby", {"text": "hello from the lobby"})
    for _ in range(2):
        channel, message = layer.receive(["demo.reply!"], block=True, timeout=1)
        print(f"{channel} got {message}")
    print("statistics:", layer.global_statistics())


if __name__ == "__main__":
    main()

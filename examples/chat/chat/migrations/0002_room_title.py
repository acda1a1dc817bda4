from django.db import migrations, models


class Migration(migrations.Migration):
    """The room title shown (and live-updated) in the room list."""

    dependencies = [
        ("chat", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="room",
            name="title",
            field=models.CharField(blank=True, max_length=80),
        ),
    ]

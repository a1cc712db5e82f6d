// Module FanoutService.
